"""Network plumbing (`knd.netns`): move NICs into pod network namespaces and back.

* `capture.capture_host_state` (prepare): what the host interface looks like now.
* `builder.build_plan` (prepare, pure): merged claim config + host state → `plan.AttachPlan`.
* `attach.attach` (NRI RunPodSandbox, 2 s budget): execute a pod's plans transactionally.
* `detach.detach` (NRI StopPodSandbox): give the NICs back and restore the host state.
* `rdma`, `dhcp`, `ebpf`, `privflags`: RDMA netlink by hand, DHCPv4 at prepare, TC/TCX eBPF
  detach, ethtool private flags.

May import `knd.api` and `knd.host` only. See docs/plumbing.md.
"""
