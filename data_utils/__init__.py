"""From files to arrays: folder (index an ImageFolder), images (decode one file robustly),
cache (decode once, on disk, healing), dataset (scan, decode, check, split), split
(stratified splits and imbalance remedies), loader (batches from the cache), augment (batched
augmentation), skips (counted, logged skips), coco (COCO boxes to class-folder crops),
mapping (dataset categories to task classes), demo (the built-in demo data)."""
