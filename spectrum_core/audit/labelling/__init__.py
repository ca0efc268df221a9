"""Names for concepts: offline labels from the texts (``offline``), LLM labels through an
OpenAI-compatible endpoint (``llm_client``, ``llm_labeller``, ``parsing``) or a local model
(``local_labeller``), and how well a label detects its concept on held-out responses
(``detection``)."""
