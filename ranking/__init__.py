"""twostage.ranking"""
