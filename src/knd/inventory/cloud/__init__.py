"""Cloud providers (GCE, AWS, Azure, OKE, Alibaba, a provider webhook): attributes published
with the inventory and device configs merged at prepare, with DraNet's names and join rules.
See docs/clouds.md."""
