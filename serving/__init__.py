"""twostage.serving"""
