"""The detection library shared by the faster_rcnn, retinanet and mask_rcnn cases."""
