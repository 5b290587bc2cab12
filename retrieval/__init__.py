"""twostage.retrieval"""
