"""The exported ``tf.Module``: request inputs, exclusion masks, the candidate search, the ranking of candidates, the signatures."""
