// virtio-scsi through the virtio-mmio transport and its I/O thread, driven the way a guest
// driver does it (tests/mmio_driver.h): configuration, commands answered at once, reads of
// the DVD image on the asynchronous disk path, addressing errors, bad chains, task
// management, saved state.
#include <chrono>
#include <cstring>
#include <thread>

#include "devices/scsi/cdrom.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/scsi.h"
#include "tests/check.h"
#include "tests/disk_rvh_helpers.h"
#include "tests/mmio_driver.h"
#include "tests/scsi_test_helpers.h"

using namespace berth;
using namespace berth::devices::virtio;
using berth::devices::scsi::ScsiCdrom;
using berth::test::TestRing;
using berth::test::rvh::TempDir;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr uint64_t kRam = 4 << 20;
constexpr uint64_t kReq = 0x100000;   // virtio_scsi_cmd_req (51 bytes)
constexpr uint64_t kResp = 0x101000;  // virtio_scsi_cmd_resp (108 bytes)
constexpr uint64_t kData = 0x200000;
constexpr uint32_t kRespBytes = 108;

struct Rig {
  TempDir dir;
  vmm::GuestMemory mem{kRam};
  test::CountingInterrupt irq;
  std::shared_ptr<ScsiCdrom> drive = std::make_shared<ScsiCdrom>("SN-1");
  std::shared_ptr<ScsiCdrom> empty = std::make_shared<ScsiCdrom>("SN-2");
  std::unique_ptr<VirtioMmio> m;
  TestRing control{mem, 16, 0x10000}, events{mem, 16, 0x20000}, requests{mem, 128, 0x30000};

  Rig() {
    test::write_iso(dir.file("a.iso"), 16);
    drive->insert(dir.file("a.iso"));
    m = std::make_unique<VirtioMmio>(mem, std::make_shared<VirtioScsi>(std::vector<std::shared_ptr<devices::scsi::Target>>{drive, empty}), irq);
    CHECK_EQ(test::rd(*m, kMmioDeviceId), 8u);
    CHECK(test::negotiate(*m));
    test::setup_queue(*m, 0, control);
    test::setup_queue(*m, 1, events);
    test::setup_queue(*m, 2, requests);
    test::driver_ok(*m);
  }

  void wait(TestRing& r, uint16_t used) {
    for (int i = 0; i < 5000 && r.used_idx() != used; ++i) {
      m->sync();
      if (r.used_idx() != used) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    CHECK_EQ(r.used_idx(), used);
  }

  // One command: request header (lun bytes), response, then data-in buffers of the sizes given.
  void command(const Bytes& lun, const Bytes& cdb, std::vector<uint32_t> data_in = {}, uint32_t req_len = 51,
               uint32_t resp_len = kRespBytes) {
    Bytes req(51, 0);
    std::memcpy(req.data(), lun.data(), std::min<size_t>(8, lun.size()));
    std::memcpy(req.data() + 19, cdb.data(), cdb.size());
    mem.write(kReq, req);
    mem.write(kResp, Bytes(kRespBytes, 0xee));
    requests.set_desc(0, kReq, req_len, kDescNext, 1);
    requests.set_desc(1, kResp, resp_len, static_cast<uint16_t>(kDescWrite | (data_in.empty() ? 0 : kDescNext)), 2);
    uint64_t at = kData;
    for (size_t i = 0; i < data_in.size(); ++i) {
      const bool last = i + 1 == data_in.size();
      requests.set_desc(static_cast<uint32_t>(2 + i), at, data_in[i], static_cast<uint16_t>(kDescWrite | (last ? 0 : kDescNext)),
                        static_cast<uint16_t>(3 + i));
      at += data_in[i] + 16;  // buffers not back to back
    }
    const uint16_t before = requests.used_idx();
    requests.offer(0);
    test::wr(*m, kMmioQueueNotify, 2);
    wait(requests, static_cast<uint16_t>(before + 1));
  }
  uint32_t resp32(uint32_t at) { return mem.read_obj<uint32_t>(kResp + at); }
  uint8_t status() { return mem.read_obj<uint8_t>(kResp + 10); }
  uint8_t response() { return mem.read_obj<uint8_t>(kResp + 11); }
  uint8_t sense(uint32_t i) { return mem.read_obj<uint8_t>(kResp + 12 + i); }
  uint32_t used_len() { return requests.used_len(static_cast<uint16_t>(requests.used_idx() - 1)); }
};

Bytes lun(uint8_t target, uint16_t l = 0) { return {1, target, static_cast<uint8_t>(0x40 | l >> 8), static_cast<uint8_t>(l), 0, 0, 0, 0}; }

}  // namespace

TEST(virtio_scsi_configuration) {
  Rig r;
  auto cfg = [&](uint32_t off) { return test::rd(*r.m, kMmioConfig + off); };
  CHECK_EQ(cfg(0), 1u);       // num_queues
  CHECK_EQ(cfg(4), 254u);     // seg_max
  CHECK_EQ(cfg(8), 0xffffu);  // max_sectors
  CHECK_EQ(cfg(16), 16u);     // event_info_size
  CHECK_EQ(cfg(20), 96u);     // sense_size
  CHECK_EQ(cfg(24), 32u);     // cdb_size
  CHECK_EQ(cfg(28), 1u << 16);  // max_channel 0, max_target 1
  CHECK_EQ(cfg(32), 0u);      // max_lun
  test::wr(*r.m, kMmioConfig + 24, 16);
  CHECK_EQ(cfg(24), 16u);
  test::wr(*r.m, kMmioConfig + 24, 100000);  // beyond what is supported: kept
  CHECK_EQ(cfg(24), 16u);
  test::wr(*r.m, kMmioConfig + 0, 7);  // read-only field
  CHECK_EQ(cfg(0), 1u);
}

TEST(virtio_scsi_inquiry_unit_attention_and_capacity) {
  Rig r;
  r.command(lun(0), {0x12, 0, 0, 0, 0xff, 0}, {512});
  CHECK_EQ(r.response(), kScsiSOk);
  CHECK_EQ(r.status(), 0);
  CHECK_EQ(r.resp32(0), 0u);          // sense_len
  CHECK_EQ(r.resp32(4), 512u - 36);   // residual
  CHECK_EQ(r.used_len(), kRespBytes + 36);
  CHECK_EQ(r.mem.read_obj<uint8_t>(kData), 0x05);
  CHECK_EQ(r.mem.read_obj<uint8_t>(kData + 1), 0x80);
  // The insert's unit attention comes with autosense, once.
  r.command(lun(0), {0, 0, 0, 0, 0, 0});
  CHECK_EQ(r.status(), 2);
  CHECK_EQ(r.resp32(0), 18u);
  CHECK_EQ(r.sense(0), 0x70);
  CHECK_EQ(r.sense(2), 6);
  CHECK_EQ(r.sense(12), 0x28);
  r.command(lun(0), {0, 0, 0, 0, 0, 0});
  CHECK_EQ(r.status(), 0);
  r.command(lun(0), {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {8});
  CHECK_EQ(r.mem.read_obj<uint32_t>(kData), 0x0f000000u);  // big-endian 15
  CHECK_EQ(r.mem.read_obj<uint32_t>(kData + 4), 0x00080000u);
  // The empty drive on target 1.
  r.command(lun(1), {0, 0, 0, 0, 0, 0});
  CHECK_EQ(r.status(), 2);
  CHECK_EQ(r.sense(2), 2);
  CHECK_EQ(r.sense(12), 0x3a);
}

TEST(virtio_scsi_reads_the_image_into_scattered_buffers) {
  Rig r;
  r.command(lun(0), {0, 0, 0, 0, 0, 0});  // unit attention
  r.command(lun(0), test::read10(2, 3), {4000, 100, 2044});
  CHECK_EQ(r.response(), kScsiSOk);
  CHECK_EQ(r.status(), 0);
  CHECK_EQ(r.resp32(4), 0u);
  CHECK_EQ(r.used_len(), kRespBytes + 6144);
  Bytes got;
  uint64_t at = kData;
  for (uint32_t n : {4000u, 100u, 2044u}) {
    Bytes part(n);
    r.mem.read(at, part);
    got.insert(got.end(), part.begin(), part.end());
    at += n + 16;
  }
  bool same = true;
  for (size_t i = 0; i < got.size(); ++i) same &= got[i] == test::iso_byte(2 + i / 2048, i % 2048);
  CHECK(same);
  // Larger data-in buffers than the read: the residual says how much is left.
  r.command(lun(0), test::read10(15, 1), {8192});
  CHECK_EQ(r.status(), 0);
  CHECK_EQ(r.resp32(4), 8192u - 2048);
  CHECK_EQ(r.mem.read_obj<uint8_t>(kData + 7), test::iso_byte(15, 7));
  // Too small: OVERRUN, nothing read. Out of range: CHECK CONDITION.
  r.command(lun(0), test::read10(0, 2), {2048});
  CHECK_EQ(r.response(), kScsiSOverrun);
  r.command(lun(0), test::read10(16, 1), {2048});
  CHECK_EQ(r.status(), 2);
  CHECK_EQ(r.sense(12), 0x21);
  CHECK_EQ(r.resp32(4), 2048u);
  // A file cut short while in the drive: MEDIUM ERROR, and the host hears why.
  CHECK(::truncate(r.dir.file("a.iso").c_str(), 2048) == 0);
  r.command(lun(0), test::read10(4, 1), {2048});
  CHECK_EQ(r.status(), 2);
  CHECK_EQ(r.sense(2), 3);
  CHECK_EQ(r.sense(12), 0x11);
  CHECK(r.drive->last_error().find("cut to 2048") != std::string::npos);
  CHECK_EQ(r.m->status() & kStatusNeedsReset, 0u);
}

TEST(virtio_scsi_addressing) {
  Rig r;
  r.command(lun(5), {0x12, 0, 0, 0, 36, 0}, {36});
  CHECK_EQ(r.response(), kScsiSBadTarget);
  r.command({2, 0, 0x40, 0, 0, 0, 0, 0}, {0x12, 0, 0, 0, 36, 0}, {36});
  CHECK_EQ(r.response(), kScsiSBadTarget);
  r.command({1, 0, 0x40, 0, 0, 0, 0, 1}, {0x12, 0, 0, 0, 36, 0}, {36});
  CHECK_EQ(r.response(), kScsiSBadTarget);
  r.command({1, 0, 0x80, 0, 0, 0, 0, 0}, {0x12, 0, 0, 0, 36, 0}, {36});  // logical unit addressing
  CHECK_EQ(r.response(), kScsiSBadTarget);
  // Peripheral form LUN 0 is LUN 0; LUN 1 exists nowhere, which INQUIRY says as data.
  r.command({1, 0, 0, 0, 0, 0, 0, 0}, {0x12, 0, 0, 0, 36, 0}, {36});
  CHECK_EQ(r.mem.read_obj<uint8_t>(kData), 0x05);
  r.command(lun(0, 1), {0x12, 0, 0, 0, 36, 0}, {36});
  CHECK_EQ(r.response(), kScsiSOk);
  CHECK_EQ(r.mem.read_obj<uint8_t>(kData), 0x7f);
  r.command(lun(0, 1), {0, 0, 0, 0, 0, 0});
  CHECK_EQ(r.status(), 2);
  CHECK_EQ(r.sense(12), 0x25);
  r.command(lun(0, 1), {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0}, {16});
  CHECK_EQ(r.mem.read_obj<uint8_t>(kData + 3), 8);
}

TEST(virtio_scsi_bad_chains) {
  Rig r;
  // A request header cut short: FAILURE.
  r.command(lun(0), {0x12, 0, 0, 0, 36, 0}, {36}, 30);
  CHECK_EQ(r.response(), kScsiSFailure);
  // A response area with room for the status but not all the sense: the sense is cut.
  r.command(lun(0), {0, 0, 0, 0, 0, 0}, {}, 51, 20);
  CHECK_EQ(r.status(), 2);
  CHECK_EQ(r.resp32(0), 18u);
  CHECK_EQ(r.sense(0), 0x70);
  CHECK_EQ(r.used_len(), 20u);
  CHECK_EQ(r.m->status() & kStatusNeedsReset, 0u);
  // No room for the response's fields: the device needs a reset.
  const uint16_t before = r.requests.used_idx();
  r.requests.set_desc(0, kReq, 51, kDescNext, 1);
  r.requests.set_desc(1, kResp, 8, kDescWrite);
  r.requests.offer(0);
  test::wr(*r.m, kMmioQueueNotify, 2);
  r.m->sync();
  CHECK((r.m->status() & kStatusNeedsReset) != 0);
  CHECK_EQ(r.requests.used_idx(), before);
}

TEST(virtio_scsi_buffers_outside_guest_memory) {
  Rig r;
  r.requests.set_desc(0, kReq, 51, kDescNext, 1);
  r.requests.set_desc(1, kRam - 8, kRespBytes, kDescWrite);
  r.requests.offer(0);
  test::wr(*r.m, kMmioQueueNotify, 2);
  r.m->sync();
  CHECK((r.m->status() & kStatusNeedsReset) != 0);
  CHECK(r.m->last_error().find("virtio-scsi") != std::string::npos || !r.m->last_error().empty());
}

TEST(virtio_scsi_task_management_and_notification_queries) {
  Rig r;
  auto control = [&](const Bytes& req, uint32_t resp_len) {
    r.mem.write(kReq, req);
    r.mem.write(kResp, Bytes(8, 0xee));
    r.control.set_desc(0, kReq, static_cast<uint32_t>(req.size()), kDescNext, 1);
    r.control.set_desc(1, kResp, resp_len, kDescWrite);
    const uint16_t before = r.control.used_idx();
    r.control.offer(0);
    test::wr(*r.m, kMmioQueueNotify, 0);
    r.wait(r.control, static_cast<uint16_t>(before + 1));
  };
  auto tmf = [&](uint32_t subtype, const Bytes& l) {
    Bytes req(40, 0);
    req[4] = static_cast<uint8_t>(subtype);
    std::memcpy(req.data() + 8, l.data(), 8);
    control(req, 1);
    return r.mem.read_obj<uint8_t>(kResp);
  };
  CHECK(r.drive->execute(Bytes{0, 0, 0, 0, 0, 0}).reply.status == 2);  // the insert's unit attention
  CHECK(r.drive->execute(Bytes{0x1e, 0, 0, 0, 1, 0}).reply.status == 0);
  CHECK(r.drive->locked());
  CHECK_EQ(tmf(kScsiTmfAbortTask, lun(0)), kScsiSOk);
  CHECK_EQ(tmf(kScsiTmfLogicalUnitReset, lun(0)), kScsiSOk);
  CHECK(!r.drive->locked());  // a reset drops the lock
  CHECK_EQ(tmf(kScsiTmfClearAca, lun(0)), kScsiSFunctionRejected);
  CHECK_EQ(tmf(99, lun(0)), kScsiSFunctionRejected);
  CHECK_EQ(tmf(kScsiTmfAbortTask, lun(9)), kScsiSBadTarget);
  // A TMF cut short.
  control(Bytes{0, 0, 0, 0, 5, 0, 0, 0}, 1);
  CHECK_EQ(r.mem.read_obj<uint8_t>(kResp), kScsiSFailure);
  // AN query: no events supported.
  Bytes an(16, 0);
  an[0] = static_cast<uint8_t>(kScsiTAnQuery);
  std::memcpy(an.data() + 4, lun(0).data(), 8);
  an[12] = 0x10;  // media change
  control(an, 5);
  CHECK_EQ(r.mem.read_obj<uint32_t>(kResp), 0u);
  CHECK_EQ(r.mem.read_obj<uint8_t>(kResp + 4), kScsiSOk);
  // Unknown type: returned with nothing written.
  control(Bytes{7, 0, 0, 0}, 8);
  CHECK_EQ(r.control.used_len(static_cast<uint16_t>(r.control.used_idx() - 1)), 0u);
  CHECK_EQ(r.m->status() & kStatusNeedsReset, 0u);
}

TEST(virtio_scsi_saved_state) {
  Rig r;
  r.command(lun(0), {0, 0, 0, 0, 0, 0});  // the unit attention
  CHECK(r.drive->execute(Bytes{0x1e, 0, 0, 0, 1, 0}).reply.status == 0);
  r.m->freeze();
  state::Writer w;
  r.m->save_state(w);
  r.m->thaw();

  auto drive = std::make_shared<ScsiCdrom>();
  auto other = std::make_shared<ScsiCdrom>();
  VirtioMmio m2(r.mem, std::make_shared<VirtioScsi>(std::vector<std::shared_ptr<devices::scsi::Target>>{drive, other}), r.irq);
  state::Reader rd(w.data(), "test");
  m2.load_state(rd);
  CHECK_STR(drive->media_path(), r.dir.file("a.iso"));
  CHECK(drive->locked());
  CHECK(drive->execute(Bytes{0, 0, 0, 0, 0, 0}).reply.status == 0);  // no unit attention was pending

  // Another number of drives: refused.
  auto lone = std::make_shared<ScsiCdrom>();
  VirtioMmio m3(r.mem, std::make_shared<VirtioScsi>(std::vector<std::shared_ptr<devices::scsi::Target>>{lone}), r.irq);
  state::Reader rd3(w.data(), "test");
  CHECK_THROWS_CODE(m3.load_state(rd3), "STATE_INVALID", "targets");
  CHECK_STR(lone->media_path(), "");
}

TEST(virtio_scsi_target_lists) {
  std::vector<std::shared_ptr<devices::scsi::Target>> many(65, std::make_shared<ScsiCdrom>());
  CHECK_THROWS_CODE(VirtioScsi(many), "VIRTIO_SETUP", "at most 64");
  CHECK_THROWS_CODE(VirtioScsi({nullptr}), "VIRTIO_SETUP", "without a drive");
  // A controller without drives answers every address BAD_TARGET.
  vmm::GuestMemory mem(kRam);
  test::CountingInterrupt irq;
  VirtioMmio m(mem, std::make_shared<VirtioScsi>(std::vector<std::shared_ptr<devices::scsi::Target>>{}), irq);
  CHECK_EQ(test::rd(m, kMmioConfig + 28), 0u);  // max_channel 0, max_target 0
  TestRing control(mem, 16, 0x10000), events(mem, 16, 0x20000), requests(mem, 16, 0x30000);
  CHECK(test::negotiate(m));
  test::setup_queue(m, 0, control);
  test::setup_queue(m, 1, events);
  test::setup_queue(m, 2, requests);
  test::driver_ok(m);
  Bytes req(51, 0);
  std::memcpy(req.data(), lun(0).data(), 8);
  req[19] = 0x12;
  req[23] = 36;
  mem.write(kReq, req);
  requests.set_desc(0, kReq, 51, kDescNext, 1);
  requests.set_desc(1, kResp, kRespBytes, kDescWrite);
  requests.offer(0);
  test::wr(m, kMmioQueueNotify, 2);
  m.sync();
  CHECK_EQ(requests.used_idx(), 1);
  CHECK_EQ(mem.read_obj<uint8_t>(kResp + 11), kScsiSBadTarget);
}

namespace {

// Offers `n` READ(10)s of one sector each (request i reads LBA i % 16) at once.
void offer_reads(Rig& r, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t req = kReq + 64ull * i, resp = kResp + 128ull * i, data = kData + 4096ull * i;
    Bytes hdr(51, 0);
    const Bytes l = lun(0);
    std::memcpy(hdr.data(), l.data(), 8);
    const Bytes cdb = test::read10(i % 16, 1);
    std::memcpy(hdr.data() + 19, cdb.data(), cdb.size());
    r.mem.write(req, hdr);
    r.mem.write(resp, Bytes(kRespBytes, 0xee));
    r.mem.write(data, Bytes(2048, 0));
    r.requests.set_desc(3 * i, req, 51, kDescNext, static_cast<uint16_t>(3 * i + 1));
    r.requests.set_desc(3 * i + 1, resp, kRespBytes, kDescWrite | kDescNext, static_cast<uint16_t>(3 * i + 2));
    r.requests.set_desc(3 * i + 2, data, 2048, kDescWrite);
    r.requests.offer(static_cast<uint16_t>(3 * i));
  }
  test::wr(*r.m, kMmioQueueNotify, 2);
}

}  // namespace

TEST(virtio_scsi_many_reads_at_once) {
  Rig r;
  r.command(lun(0), {0, 0, 0, 0, 0, 0});  // the unit attention
  const uint16_t before = r.requests.used_idx();
  constexpr uint32_t kCount = 40;  // more than one medium's asynchronous depth
  offer_reads(r, kCount);
  r.wait(r.requests, static_cast<uint16_t>(before + kCount));
  for (uint32_t i = 0; i < kCount; ++i) {
    CHECK_EQ(r.mem.read_obj<uint8_t>(kResp + 128ull * i + 10), 0);
    CHECK_EQ(r.mem.read_obj<uint8_t>(kResp + 128ull * i + 11), kScsiSOk);
    CHECK_EQ(r.mem.read_obj<uint8_t>(kData + 4096ull * i + 2047), test::iso_byte(i % 16, 2047));
  }
}

TEST(virtio_scsi_host_eject_while_reads_are_on_the_disk) {
  Rig r;
  r.command(lun(0), {0, 0, 0, 0, 0, 0});
  const uint16_t before = r.requests.used_idx();
  constexpr uint32_t kCount = 40;
  offer_reads(r, kCount);
  CHECK(r.drive->eject());  // from this (host) thread, racing the I/O thread
  r.wait(r.requests, static_cast<uint16_t>(before + kCount));
  for (uint32_t i = 0; i < kCount; ++i) {
    const uint64_t resp = kResp + 128ull * i;
    const uint8_t status = r.mem.read_obj<uint8_t>(resp + 10);
    if (status == 0) {
      CHECK_EQ(r.mem.read_obj<uint8_t>(kData + 4096ull * i + 5), test::iso_byte(i % 16, 5));
    } else {
      CHECK_EQ(status, 2);
      const uint8_t key = r.mem.read_obj<uint8_t>(resp + 12 + 2), asc = r.mem.read_obj<uint8_t>(resp + 12 + 12);
      CHECK((key == 6 || key == 2) && asc == 0x3a);
    }
  }
  // The eject's unit attention, unless a read that found the medium gone reported it.
  r.command(lun(0), test::read10(0, 1), {2048});
  if (r.sense(2) == 6) r.command(lun(0), test::read10(0, 1), {2048});
  CHECK_EQ(r.status(), 2);
  CHECK_EQ(r.sense(2), 2);
  CHECK_EQ(r.sense(12), 0x3a);
}
