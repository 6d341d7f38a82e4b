"""tuner: LoRA fine-tuning and DPO alignment of a causal LM with the Hugging Face stack (course days 28-30)."""
