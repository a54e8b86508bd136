//! Flow caches in front of the pipeline: EMC, megaflow cache, slow path.
