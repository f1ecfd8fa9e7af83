/*
 * Berth test guest: a polling virtio-net driver (receive queue 0, transmit queue 1,
 * features MAC + STATUS, the 12-byte header, no offloads) and the virtio-net scenarios.
 */
#include "guest.h"
#include "net.h"
#include "virtio.h"

#define VIRTIO_ID_NET 1
#define NET_F_MAC (1u << 5)
#define NET_F_STATUS (1u << 16)
#define RX_SLOTS QSIZE

u8 net_mac[6];
static u32 net_base;
static struct vq nrx, ntx;

static void post_rx(u32 slot, u32 len)
{
	set_desc(&nrx, slot, (u32)(nrx.buf + slot * 0x1000), 0, len, DESC_WRITE, 0);
	vq_submit(&nrx, (u16)slot);
}

int vnet_init(const char *cmdline)
{
	net_base = find_device(cmdline, VIRTIO_ID_NET);
	if (!net_base)
		return -1;
	if (negotiate_features(net_base, NET_F_MAC | NET_F_STATUS))
		return -2;
	u32 lo = mmio_read32(net_base + VM_CONFIG), hi = mmio_read32(net_base + VM_CONFIG + 4);
	for (int i = 0; i < 4; i++)
		net_mac[i] = (u8)(lo >> (8 * i));
	net_mac[4] = (u8)hi;
	net_mac[5] = (u8)(hi >> 8);
	if (!((hi >> 16) & 1)) /* status: VIRTIO_NET_S_LINK_UP */
		return -3;
	if (vq_setup(&nrx, net_base, 0, QSIZE) || vq_setup(&ntx, net_base, 1, QSIZE))
		return -2;
	driver_ok(net_base);
	return 0;
}

static void post_all_rx(void)
{
	for (u32 slot = 0; slot < RX_SLOTS; slot++)
		post_rx(slot, NET_RX_BUF);
}

u8 *vnet_tx_frame(void) { return ntx.buf + NET_HDR; }

int vnet_send(u32 frame_len)
{
	u32 id, len;
	memset(ntx.buf, 0, NET_HDR);
	set_desc(&ntx, 0, (u32)ntx.buf, 0, NET_HDR + frame_len, 0, 0);
	vq_submit(&ntx, 0);
	return vq_wait(&ntx, &id, &len);
}

int vnet_poll(u8 **frame, u32 *len)
{
	if (nrx.used[1] == nrx.used_seen)
		return -1;
	barrier();
	volatile u32 *elem = (volatile u32 *)(nrx.used + 2) + 2 * (nrx.used_seen % nrx.size);
	u32 id = elem[0], n = elem[1];
	nrx.used_seen++;
	if (id >= RX_SLOTS)
		return -1;
	*frame = nrx.buf + id * 0x1000 + NET_HDR;
	*len = n > NET_HDR ? n - NET_HDR : 0;
	return (int)id;
}

void vnet_repost(int slot) { post_rx((u32)slot, NET_RX_BUF); }

__attribute__((noreturn)) static void net_fail(const char *what)
{
	puts("virtio-net: ");
	puts(what);
	putc('\n');
	guest_exit(1);
}

static void put_hex2(u8 v)
{
	const char *d = "0123456789abcdef";
	putc(d[v >> 4]);
	putc(d[v & 15]);
}

static void start_and_lease(const char *cmdline)
{
	int r = vnet_init(cmdline);
	if (r == -1)
		net_fail("no device");
	if (r == -3)
		net_fail("link down");
	if (r)
		net_fail("device setup failed");
	post_all_rx();
	puts("virtio-net: mac ");
	for (int i = 0; i < 6; i++) {
		if (i)
			putc(':');
		put_hex2(net_mac[i]);
	}
	putc('\n');
	if (net_dhcp())
		net_fail("no dhcp lease");
	puts("virtio-net: dhcp lease ");
	put_ip(net_ip);
	puts(" gateway ");
	put_ip(net_gateway);
	puts(" dns ");
	put_ip(net_dns);
	putc('\n');
}

void scenario_virtio_net_dhcp(const char *cmdline)
{
	start_and_lease(cmdline);
	guest_exit(0);
}

void scenario_virtio_net_echo(const char *cmdline, u32 port)
{
	start_and_lease(cmdline);
	/* A restricted NAT leases no router (libslirp): replies then go to the MAC the
	 * connection came from, as they always do. */
	if (net_gateway && net_resolve_gateway())
		net_fail("gateway did not answer ARP");
	puts("virtio-net: listening on ");
	put_ip(net_ip);
	putc(':');
	put_u32(port);
	putc('\n');
	int n = net_tcp_echo_server((u16)port);
	if (n < 0)
		net_fail("connection failed");
	puts("virtio-net: connection closed after ");
	put_u32((u32)n);
	puts(" bytes\n");
	guest_exit(0);
}

/*
 * Hostile driver: a transmit chain shorter than the header, a receive buffer too small
 * for any frame; the device must return both and keep working (no DEVICE_NEEDS_RESET).
 */
void scenario_virtio_net_hostile(const char *cmdline)
{
	u32 id, len;
	int r = vnet_init(cmdline);
	if (r)
		net_fail("device setup failed");
	/* 1: a 4-byte transmit chain. */
	set_desc(&ntx, 0, (u32)ntx.buf, 0, 4, 0, 0);
	vq_submit(&ntx, 0);
	if (vq_wait(&ntx, &id, &len) || id != 0)
		net_fail("short transmit chain not returned");
	if (mmio_read32(net_base + 0x070) & 0x40)
		net_fail("short transmit chain -> needs reset");
	puts("net-hostile: short transmit chain -> returned, device ok\n");
	/* 2: one 8-byte receive buffer; DISCOVER makes the NAT answer with an OFFER. */
	post_rx(0, 8);
	net_dhcp_discover();
	u8 *frame;
	u32 flen = 1;
	int slot = -1;
	for (u32 spins = 0; spins < 4000000u && slot < 0; spins++)
		slot = vnet_poll(&frame, &flen);
	if (slot != 0 || flen != 0)
		net_fail("tiny receive buffer not returned empty");
	if (mmio_read32(net_base + 0x070) & 0x40)
		net_fail("tiny receive buffer -> needs reset");
	puts("net-hostile: tiny receive buffer -> returned empty, device ok\n");
	/* 3: the device still works: a proper lease. */
	post_all_rx();
	if (net_dhcp())
		net_fail("no dhcp lease afterwards");
	puts("net-hostile: dhcp lease ");
	put_ip(net_ip);
	puts(" afterwards\n");
	guest_exit(0);
}
