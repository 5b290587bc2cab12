"""The SavedModel as an artifact: assembled from the trained stages, exported as a version, exported again with another index, loaded."""
