// The asynchronous path of formats that map guest offsets to runs of their image file
// (BlockDevice::open_async on qcow2, VHD and VHDX images).
//
// Reads and writes of allocated data become file I/O on a FileAsyncDisk and run in
// parallel; reads the driver knows are zeroes are answered at once. Everything that needs
// metadata goes through the synchronous driver from submit(), in submission order: writes
// that allocate (or copy, or update a sector bitmap) and reads through a backing file or of
// data the driver assembles. So allocations are serialized, keep the synchronous driver's
// ordering (qcow2: data, then refcounts and L2 tables, then L1; VHD: data and bitmap before
// the BAT entry; VHDX: data before the logged BAT update) and a later request to the same
// cluster or block finds it allocated: nothing waits for an allocation in flight, because
// none ever is. A flush waits for every request before it, then flushes the driver (which
// syncs the data written asynchronously as well) before it completes.
//
// The driver work runs on the caller's thread, inside submit(): an allocating write or a
// read from a backing file blocks the submitter for as long as the driver takes.
//
// The AsyncDisk uses the device's descriptors and metadata caches: it must not outlive the
// device, and the device's synchronous calls must not be used while requests are in flight.
// Destroying it waits until every request submitted has been carried out.
#pragma once

#include <memory>

#include "disk/async_disk.h"
#include "disk/mapped_async_host.h"

namespace berth::disk {

// data: the descriptor for guest data (the device's O_DIRECT one if any), with the file's
// limits; the device's capacity and read-only state come from host.device().
std::unique_ptr<AsyncDisk> make_mapped_async_disk(MappedAsyncHost& host, const AsyncTarget& data, unsigned depth,
                                                  AsyncBackend backend);

}  // namespace berth::disk
