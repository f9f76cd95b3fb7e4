"""Views of an image: multi-crop, the crop and colour operations, normalisation."""
