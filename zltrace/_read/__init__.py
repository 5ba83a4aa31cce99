"""The read side: trace files back to exchanges, and the LLM calls they hold."""
