"""memtune: tune the memory policies of long-running LLM agents."""
