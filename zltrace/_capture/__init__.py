"""Capture front-ends (caller thread): traced urllib3 pools and connections, the response tee,
and the probe that times their hooks. They feed the pipeline through its event vocabulary only.
"""
