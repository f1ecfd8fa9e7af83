/* Berth test guest: the virtio-net driver (virtio_net.c) and a tiny IPv4 stack
 * (net_stack.c): ARP, IPv4 without fragments, UDP, a DHCP client and a one-connection
 * TCP listener. Polling only. */
#ifndef BERTH_GUEST_NET_H
#define BERTH_GUEST_NET_H

#include "guest.h"

#define NET_HDR 12      /* struct virtio_net_hdr with num_buffers (VERSION_1) */
#define NET_RX_BUF 2048 /* receive buffer per slot: header + a 1514-byte frame fits */

/* virtio_net.c */
extern u8 net_mac[6];
int vnet_init(const char *cmdline);  /* 0 ok; prints nothing */
u8 *vnet_tx_frame(void);              /* where the next frame (Ethernet header first) goes */
int vnet_send(u32 frame_len);         /* sends the frame at vnet_tx_frame(); 0 ok */
/* Next received frame: returns its slot (>= 0) and sets *frame and *len, -1 if none. A
 * completion with a length not larger than the header sets *len = 0 (a dropped frame). */
int vnet_poll(u8 **frame, u32 *len);
void vnet_repost(int slot);

/* net_stack.c */
extern u32 net_ip, net_gateway, net_dns, net_netmask; /* host byte order */
void net_input(const u8 *frame, u32 len);
/* Runs DHCP (DISCOVER/OFFER/REQUEST/ACK); 0 ok, -1 on timeout. */
int net_dhcp(void);
/* ARP for the gateway; 0 ok. */
int net_resolve_gateway(void);
/* One TCP connection at a time on `port`; returns the number of bytes received once the
 * peer has closed and our FIN is acknowledged, -1 on a reset or a timeout. */
int net_tcp_echo_server(u16 port);
void put_ip(u32 ip);
/* Sends the DHCP DISCOVER only (the hostile scenario uses it to get a frame back). */
void net_dhcp_discover(void);
void net_poll_once(void);

#endif
