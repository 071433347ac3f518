"""accelbench-toy: an example extension adding the 'toy_npu' accelerator and the 'tiny_frcnn' case."""
