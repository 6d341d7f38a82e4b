"""tinygpt: a GPT written from scratch and trained end-to-end (course days 21-27)."""
