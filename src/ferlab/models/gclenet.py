"""(placeholder: written by the model-zoo work; registers nothing yet)."""
