// The qcow2 driver's asynchronous path (BlockDevice::open_async on a qcow2 image).
//
// Reads and writes of allocated clusters become file I/O on a FileAsyncDisk and run in
// parallel; reads of zero or unallocated clusters (without a backing file) are answered at
// once with zeroes. Everything that needs metadata goes through the synchronous driver
// from submit(), in submission order: writes that allocate a cluster (or copy it: a zero
// cluster, a compressed or shared one) and reads through the backing file or of compressed
// clusters. So allocations are serialized, keep the synchronous driver's ordering (data,
// then refcounts and L2 tables, then L1, each step synced before the next is written) and
// a later request to a cluster finds it allocated: nothing waits for an allocation in
// flight, because none ever is. A flush waits for every request before it, then flushes
// the driver (which syncs the data written asynchronously as well) before it completes.
//
// The AsyncDisk uses the device's descriptors and metadata caches: it must not outlive the
// device, and the device's synchronous calls must not be used while requests are in flight.
// Destroying it waits until every request submitted has been carried out.
#pragma once

#include <memory>

#include "disk/async_disk.h"
#include "disk/qcow2/async_host.h"

namespace berth::disk::qcow2 {

// data: the descriptor for guest data clusters (the device's O_DIRECT one if any), with the
// file's limits; the device's capacity and read-only state come from host.device().
std::unique_ptr<AsyncDisk> make_async_disk(AsyncHost& host, const AsyncTarget& data, unsigned depth,
                                           AsyncBackend backend);

}  // namespace berth::disk::qcow2
