"""Object detection on a pretrained backbone: detection data (COCO, Pascal VOC, the synthetic set), the
ViTDet-style pyramid and torchvision detectors, training, COCO box AP and the prediction figure."""
