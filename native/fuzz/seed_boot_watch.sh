#!/bin/sh
# Seeds: the firmware lines the watch knows, as a console prints them.
set -e
printf '\001SeaBIOS (version 1.16.2)\r\nBooting from DVD/CD...\r\nNo bootable device.  Retrying in 60 seconds.\r\n' > "$1/seabios"
printf '\077BdsDxe: No bootable option or device was found.\r\nBdsDxe: loading Boot0001 "UEFI"\r\n' > "$1/ovmf"
