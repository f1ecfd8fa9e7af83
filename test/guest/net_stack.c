/*
 * Berth test guest: a tiny IPv4 stack over the virtio-net driver. ARP (answers for our
 * address, resolves the gateway), IPv4 (no options sent, fragments dropped), UDP (DHCP
 * client only), TCP (one listening connection: handshake, in-order data, ACKs, FIN, one
 * resend of the last segment on a timeout). Everything we send goes to the gateway's MAC
 * (on the NAT every peer is behind 10.0.2.2), or to the MAC a frame came from.
 */
#include "guest.h"
#include "net.h"

#define ETH_ARP 0x0806
#define ETH_IP 0x0800
#define PROTO_TCP 6
#define PROTO_UDP 17

#define TCP_FIN 1
#define TCP_SYN 2
#define TCP_RST 4
#define TCP_PSH 8
#define TCP_ACK 16

#define SPINS_PER_TRY 1500000u /* polls before a resend (a few seconds, emulated) */

u32 net_ip, net_gateway, net_dns, net_netmask;
static u8 gw_mac[6];
static int gw_mac_known;
static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static u16 ip_id;

static u16 get16(const u8 *p) { return (u16)((p[0] << 8) | p[1]); }
static u32 get32(const u8 *p) { return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3]; }
static void put16(u8 *p, u32 v)
{
	p[0] = (u8)(v >> 8);
	p[1] = (u8)v;
}
static void put32(u8 *p, u32 v)
{
	p[0] = (u8)(v >> 24);
	p[1] = (u8)(v >> 16);
	p[2] = (u8)(v >> 8);
	p[3] = (u8)v;
}

void put_ip(u32 ip)
{
	for (int i = 3; i >= 0; i--) {
		put_u32((ip >> (8 * i)) & 0xff);
		if (i)
			putc('.');
	}
}

static u32 csum_add(u32 sum, const u8 *p, u32 n)
{
	for (; n > 1; p += 2, n -= 2)
		sum += (u32)((p[0] << 8) | p[1]);
	if (n)
		sum += (u32)(p[0] << 8);
	return sum;
}

static u16 csum_fold(u32 sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (u16)~sum;
}

/* ---- output ---- */

static u8 *tx(void) { return vnet_tx_frame(); }

static void eth_send(const u8 *dst, u16 type, u32 payload_len)
{
	u8 *f = tx();
	memcpy(f, dst, 6);
	memcpy(f + 6, net_mac, 6);
	put16(f + 12, type);
	vnet_send(14 + payload_len);
}

/* The IPv4 payload goes to tx() + 34. */
static void ip_send(const u8 *dst_mac, u32 src, u32 dst, u8 proto, u32 payload_len)
{
	u8 *ip = tx() + 14;
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, 20 + payload_len);
	put16(ip + 4, ip_id++);
	put16(ip + 6, 0x4000); /* DF */
	ip[8] = 64;
	ip[9] = proto;
	put16(ip + 10, 0);
	put32(ip + 12, src);
	put32(ip + 16, dst);
	put16(ip + 10, csum_fold(csum_add(0, ip, 20)));
	eth_send(dst_mac, ETH_IP, 20 + payload_len);
}

static void arp_send(u16 op, const u8 *target_mac, u32 target_ip, const u8 *eth_dst)
{
	u8 *a = tx() + 14;
	put16(a, 1);
	put16(a + 2, ETH_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, net_mac, 6);
	put32(a + 14, net_ip);
	memcpy(a + 18, target_mac, 6);
	put32(a + 24, target_ip);
	eth_send(eth_dst, ETH_ARP, 28);
}

/* ---- DHCP ---- */

#define DHCP_XID 0x42455254u /* "BERT" */
enum { DHCP_DISCOVER = 1, DHCP_OFFER = 2, DHCP_REQUEST = 3, DHCP_ACK = 5, DHCP_NAK = 6 };
#define BOOTP_LEN 548 /* 240 fixed + options, so the IP datagram is 576 bytes */

static int dhcp_state; /* 0 idle, 1 waiting for an OFFER, 2 waiting for the ACK, 3 bound */
static u32 offer_ip, offer_server, offer_router, offer_dns, offer_mask;

static void dhcp_send(u8 type)
{
	u8 *udp = tx() + 34;
	u8 *b = udp + 8;
	memset(b, 0, BOOTP_LEN);
	b[0] = 1; /* BOOTREQUEST */
	b[1] = 1;
	b[2] = 6;
	put32(b + 4, DHCP_XID);
	put16(b + 10, 0x8000); /* broadcast the reply */
	memcpy(b + 28, net_mac, 6);
	put32(b + 236, 0x63825363u);
	u8 *o = b + 240;
	*o++ = 53;
	*o++ = 1;
	*o++ = type;
	if (type == DHCP_REQUEST) {
		*o++ = 50;
		*o++ = 4;
		put32(o, offer_ip);
		o += 4;
		*o++ = 54;
		*o++ = 4;
		put32(o, offer_server);
		o += 4;
	}
	*o++ = 55;
	*o++ = 3;
	*o++ = 1;
	*o++ = 3;
	*o++ = 6;
	*o = 255;
	put16(udp, 68);
	put16(udp + 2, 67);
	put16(udp + 4, 8 + BOOTP_LEN);
	put16(udp + 6, 0); /* no checksum (allowed over IPv4) */
	ip_send(bcast, 0, 0xffffffffu, PROTO_UDP, 8 + BOOTP_LEN);
}

void net_dhcp_discover(void)
{
	dhcp_state = 1;
	dhcp_send(DHCP_DISCOVER);
}

static void dhcp_input(const u8 *b, u32 len)
{
	if (len < 240 || b[0] != 2 || get32(b + 4) != DHCP_XID || memcmp(b + 28, net_mac, 6) ||
	    get32(b + 236) != 0x63825363u)
		return;
	u32 type = 0, server = 0, router = 0, dns = 0, mask = 0;
	for (u32 i = 240; i < len;) {
		u8 code = b[i];
		if (code == 255)
			break;
		if (code == 0) {
			i++;
			continue;
		}
		if (i + 2 > len || i + 2 + b[i + 1] > len)
			break;
		const u8 *v = b + i + 2;
		u8 l = b[i + 1];
		if (code == 53 && l >= 1)
			type = v[0];
		else if (code == 54 && l >= 4)
			server = get32(v);
		else if (code == 3 && l >= 4)
			router = get32(v);
		else if (code == 6 && l >= 4)
			dns = get32(v);
		else if (code == 1 && l >= 4)
			mask = get32(v);
		i += 2u + l;
	}
	if (dhcp_state == 1 && type == DHCP_OFFER) {
		offer_ip = get32(b + 16);
		offer_server = server;
		offer_router = router;
		offer_dns = dns;
		offer_mask = mask;
		dhcp_state = 2;
		dhcp_send(DHCP_REQUEST);
	} else if (dhcp_state == 2 && type == DHCP_ACK) {
		net_ip = get32(b + 16);
		net_gateway = router ? router : offer_router;
		net_dns = dns ? dns : offer_dns;
		net_netmask = mask ? mask : offer_mask;
		dhcp_state = 3;
	} else if (dhcp_state == 2 && type == DHCP_NAK) {
		dhcp_state = 0;
	}
}

/* ---- TCP ---- */

enum { T_CLOSED, T_LISTEN, T_SYN_RCVD, T_ESTABLISHED, T_LAST_ACK, T_DONE, T_RESET };
#define TCP_WINDOW 8192
#define TCP_ISS 0x10000000u

static struct {
	int state;
	u16 port, peer_port;
	u32 peer_ip;
	u8 peer_mac[6];
	u32 snd_una, snd_nxt, rcv_nxt;
	u32 received;
	/* The last segment sent that takes sequence space, for one resend. */
	u8 last_flags;
	u32 last_seq, last_len;
	u8 last_data[1460];
} tcp;

static void tcp_send(u8 flags, u32 seq, const u8 *data, u32 len)
{
	u8 *t = tx() + 34;
	u32 hlen = (flags & TCP_SYN) ? 24 : 20;
	put16(t, tcp.port);
	put16(t + 2, tcp.peer_port);
	put32(t + 4, seq);
	put32(t + 8, (flags & TCP_ACK) ? tcp.rcv_nxt : 0);
	t[12] = (u8)((hlen / 4) << 4);
	t[13] = flags;
	put16(t + 14, TCP_WINDOW);
	put16(t + 16, 0);
	put16(t + 18, 0);
	if (hlen == 24) {
		t[20] = 2; /* MSS 1460 */
		t[21] = 4;
		put16(t + 22, 1460);
	}
	if (len)
		memcpy(t + hlen, data, len);
	u8 pseudo[12];
	put32(pseudo, net_ip);
	put32(pseudo + 4, tcp.peer_ip);
	pseudo[8] = 0;
	pseudo[9] = PROTO_TCP;
	put16(pseudo + 10, hlen + len);
	put16(t + 16, csum_fold(csum_add(csum_add(0, pseudo, 12), t, hlen + len)));
	ip_send(tcp.peer_mac, net_ip, tcp.peer_ip, PROTO_TCP, hlen + len);
}

/* A segment that uses sequence space (SYN, FIN, data): remembered for a resend. */
static void tcp_send_seq(u8 flags, const u8 *data, u32 len)
{
	tcp.last_flags = flags;
	tcp.last_seq = tcp.snd_nxt;
	tcp.last_len = len;
	if (len)
		memcpy(tcp.last_data, data, len);
	tcp_send(flags, tcp.snd_nxt, data, len);
	tcp.snd_nxt += len + ((flags & (TCP_SYN | TCP_FIN)) ? 1 : 0);
}

static void tcp_input(u32 src, const u8 *src_mac, const u8 *t, u32 len)
{
	if (len < 20)
		return;
	u32 hlen = (u32)(t[12] >> 4) * 4;
	if (hlen < 20 || hlen > len || get16(t + 2) != tcp.port)
		return;
	u8 flags = t[13];
	u32 seq = get32(t + 4), ack = get32(t + 8);
	const u8 *data = t + hlen;
	u32 dlen = len - hlen;
	if (tcp.state == T_LISTEN) {
		if ((flags & (TCP_SYN | TCP_ACK | TCP_RST)) != TCP_SYN)
			return;
		tcp.peer_ip = src;
		tcp.peer_port = get16(t);
		memcpy(tcp.peer_mac, src_mac, 6);
		tcp.rcv_nxt = seq + 1;
		tcp.snd_una = tcp.snd_nxt = TCP_ISS;
		tcp.received = 0;
		tcp_send_seq(TCP_SYN | TCP_ACK, 0, 0);
		tcp.state = T_SYN_RCVD;
		return;
	}
	if (src != tcp.peer_ip || get16(t) != tcp.peer_port)
		return; /* one connection at a time: others are ignored */
	if (flags & TCP_RST) {
		tcp.state = T_RESET;
		return;
	}
	if (flags & TCP_SYN) {
		/* Our SYN-ACK was lost or is late: send it again. */
		if (tcp.state == T_SYN_RCVD)
			tcp_send(TCP_SYN | TCP_ACK, TCP_ISS, 0, 0);
		return;
	}
	if (!(flags & TCP_ACK))
		return;
	if ((int)(ack - tcp.snd_una) > 0 && (int)(ack - tcp.snd_nxt) <= 0)
		tcp.snd_una = ack;
	if (tcp.state == T_SYN_RCVD) {
		if (tcp.snd_una != tcp.snd_nxt)
			return;
		tcp.state = T_ESTABLISHED;
	}
	if (tcp.state == T_LAST_ACK) {
		if (tcp.snd_una == tcp.snd_nxt)
			tcp.state = T_DONE;
		return;
	}
	if (tcp.state != T_ESTABLISHED)
		return;
	if (seq != tcp.rcv_nxt) {
		if (dlen || (flags & TCP_FIN))
			tcp_send(TCP_ACK, tcp.snd_nxt, 0, 0); /* duplicate or out of order: say where we are */
		return;
	}
	if (dlen) {
		if (dlen > sizeof tcp.last_data)
			dlen = sizeof tcp.last_data; /* the rest comes again */
		u8 up[1460];
		for (u32 i = 0; i < dlen; i++) {
			u8 c = data[i];
			up[i] = (c >= 'a' && c <= 'z') ? (u8)(c - 32) : c;
		}
		tcp.rcv_nxt += dlen;
		tcp.received += dlen;
		/* The echo carries the acknowledgement. */
		tcp_send_seq(TCP_ACK | TCP_PSH, up, dlen);
	}
	if ((flags & TCP_FIN) && (u32)(data - t) + dlen == len) {
		tcp.rcv_nxt += 1;
		tcp_send_seq(TCP_FIN | TCP_ACK, 0, 0);
		tcp.state = T_LAST_ACK;
	}
}

/* ---- input ---- */

static void arp_input(const u8 *a, u32 len)
{
	if (len < 28 || get16(a) != 1 || get16(a + 2) != ETH_IP || a[4] != 6 || a[5] != 4)
		return;
	u16 op = get16(a + 6);
	u32 sender_ip = get32(a + 14), target_ip = get32(a + 24);
	if (net_gateway && sender_ip == net_gateway) {
		memcpy(gw_mac, a + 8, 6);
		gw_mac_known = 1;
	}
	if (op == 1 && net_ip && target_ip == net_ip) {
		u8 mac[6];
		memcpy(mac, a + 8, 6);
		arp_send(2, mac, sender_ip, mac);
	}
}

void net_input(const u8 *f, u32 len)
{
	if (len < 14)
		return;
	u16 type = get16(f + 12);
	if (type == ETH_ARP) {
		arp_input(f + 14, len - 14);
		return;
	}
	if (type != ETH_IP || len < 34)
		return;
	const u8 *ip = f + 14;
	u32 ihl = (u32)(ip[0] & 15) * 4, total = get16(ip + 2);
	if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl || total > len - 14)
		return;
	if (get16(ip + 6) & 0x3fff)
		return; /* a fragment */
	u32 src = get32(ip + 12), dst = get32(ip + 16);
	if (net_ip && dst != net_ip && dst != 0xffffffffu)
		return;
	const u8 *p = ip + ihl;
	u32 plen = total - ihl;
	if (ip[9] == PROTO_UDP && plen >= 8) {
		u32 ulen = get16(p + 4);
		if (ulen < 8 || ulen > plen)
			return;
		if (get16(p + 2) == 68)
			dhcp_input(p + 8, ulen - 8);
	} else if (ip[9] == PROTO_TCP && net_ip && dst == net_ip && tcp.state != T_CLOSED) {
		tcp_input(src, f + 6, p, plen);
	}
}

void net_poll_once(void)
{
	u8 *frame;
	u32 len;
	int slot = vnet_poll(&frame, &len);
	if (slot < 0) {
		cpu_relax();
		return;
	}
	if (len)
		net_input(frame, len);
	vnet_repost(slot);
}

int net_dhcp(void)
{
	for (int attempt = 0; attempt < 4; attempt++) {
		net_dhcp_discover();
		for (u32 spins = 0; spins < SPINS_PER_TRY && dhcp_state != 3; spins++)
			net_poll_once();
		if (dhcp_state == 3)
			return 0;
	}
	return -1;
}

int net_resolve_gateway(void)
{
	for (int attempt = 0; attempt < 4; attempt++) {
		arp_send(1, (const u8 *)"\0\0\0\0\0\0", net_gateway, bcast);
		for (u32 spins = 0; spins < SPINS_PER_TRY && !gw_mac_known; spins++)
			net_poll_once();
		if (gw_mac_known)
			return 0;
	}
	return -1;
}

int net_tcp_echo_server(u16 port)
{
	memset(&tcp, 0, sizeof tcp);
	tcp.port = port;
	tcp.state = T_LISTEN;
	u32 idle = 0, resends = 0;
	for (;;) {
		u32 before = tcp.snd_una;
		int state = tcp.state;
		net_poll_once();
		if (tcp.state == T_DONE)
			return (int)tcp.received;
		if (tcp.state == T_RESET)
			return -1;
		if (tcp.snd_una != before || tcp.state != state || tcp.snd_una == tcp.snd_nxt) {
			idle = 0;
			continue;
		}
		/* Something of ours is unacknowledged: resend it after a while (slirp does not
		 * lose frames, so this is a safety net, not congestion control). */
		if (++idle >= SPINS_PER_TRY) {
			idle = 0;
			if (++resends > 8)
				return -1;
			tcp_send(tcp.last_flags, tcp.last_seq, tcp.last_data, tcp.last_len);
		}
	}
}
