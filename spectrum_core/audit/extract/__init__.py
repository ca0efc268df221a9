"""From pairs to numbers: the model's residual activations on every response token
(``activations``), and the SAE's activations on them pooled per response (``features``)."""
