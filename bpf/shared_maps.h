/* The maps the tracker and the LSM guard share: defined once, so that the guard's copies match
 * the tracker's exactly (pnsd hands the guard the tracker's maps with bpf_map__reuse_fd, which
 * refuses a map of another type, size or key and value width). */
#pragma once

/* tgid -> membership (bpf/abi.h); pnsd sets max_entries at load (PNS_MAX_MEMBERS) */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, PNS_MAX_MEMBERS);
    __type(key, __u32);
    __type(value, struct pns_member);
} members SEC(".maps");

/* struct pns_event records for pnsd */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, PNS_EVENTS_BYTES);
} events SEC(".maps");

/* Whether an optional event (PNS_EVENTS_OPTIONAL_BYTES) may be sent now. */
static __always_inline bool room_for_optional_event(void) {
    return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) < PNS_EVENTS_OPTIONAL_BYTES;
}
