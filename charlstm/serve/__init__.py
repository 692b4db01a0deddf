"""`charlstm serve`: a trained model behind an HTTP API (OpenAI's completions shape and
charlstm's own), every concurrent stream one row of a batched recurrent step."""
