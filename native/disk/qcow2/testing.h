// Fault injection for the qcow2 driver's crash-consistency tests. Not for production use:
// the state is process-wide and unsynchronized, so it exists only in test builds
// (BERTH_TEST_HOOKS, set by native/tests/Makefile); the addon and berth-vmm have none.
#pragma once

#ifndef BERTH_TEST_HOOKS
#error "disk/qcow2/testing.h is for test builds only (define BERTH_TEST_HOOKS)"
#endif

#include <cstddef>
#include <cstdint>

namespace berth::disk::qcow2::testing {

// Simulates power loss after `writes` more write calls (pwrite, hole punch, truncate,
// fallocate) by any qcow2 device in this process: the next write and everything after it
// (writes and syncs) fail with DISK_IO "simulated power loss" and never reach the file.
// Writes already issued stay on the file, as after losing a volatile write-back cache
// that had written them in order. With lose_unsynced, writes not followed by a
// completed sync are also rolled back when the crash happens (a lost page cache).
// A negative count disarms the hook.
void crash_after_writes(int64_t writes, bool lose_unsynced = false);
// True once the simulated crash has happened (until the hook is re-armed or disarmed).
bool crashed();
// Caps the L2 and refcount-block caches of qcow2 devices opened afterwards at `tables`
// tables each (at least 4), so tests exercise eviction write-back; 0 restores the defaults.
void limit_metadata_cache(size_t tables);
// Write calls issued by qcow2 devices since the hook was last armed or disarmed.
uint64_t writes_issued();
// Called just before the simulated crash happens (before a lost page cache is rolled back),
// so an asynchronous path can let the writes it has in flight land first: they reached
// the file before the power went, and are rolled back with the rest if they were unsynced.
// One callback at a time (a qcow2 device registers the AsyncDisk open on it, through
// MappedAsyncHost::set_settle_hook); nullptr removes it.
void on_crash(void (*callback)(void*), void* arg);

}  // namespace berth::disk::qcow2::testing
