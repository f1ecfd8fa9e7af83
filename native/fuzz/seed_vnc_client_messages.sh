#!/bin/sh
# Seeds: the messages a viewer sends (SetPixelFormat, SetEncodings with QEMU's extended key
# events, update request, key, pointer, cut text) and a QEMU extended key event.
set -e
printf '\000\000\000\000\040\030\000\001\000\377\000\377\000\377\020\010\000\000\000\000' > "$1/pixel-format"
printf '\002\000\000\002\000\000\000\000\377\377\376\376' > "$1/encodings"
printf '\003\001\000\000\000\000\002\200\001\340' > "$1/update-request"
printf '\004\001\000\000\000\000\000\141\004\000\000\000\000\000\000\141' > "$1/key"
printf '\005\001\001\220\000\310' > "$1/pointer"
printf '\006\000\000\000\000\000\000\005hello' > "$1/cut-text"
printf '\002\000\000\001\377\377\376\376\377\000\000\001\000\000\000\161\000\000\000\036' > "$1/qemu-key"
