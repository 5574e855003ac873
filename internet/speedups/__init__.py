"""The inference speed-ups: the model's fast inference copy (channels-last, sub-pixel upsampling, pre-packed
convolutions, merged heads), the allocator settings, and single-threaded BLAS while the pipeline runs."""
