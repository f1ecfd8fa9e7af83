#!/bin/sh
# Seeds: valid requests of each kind (first byte 0) and a valid machine spec (first byte 1).
set -e
dir=$1
i=0
for line in '{"id":1,"op":"hello","protocol":2,"client":"cli"}' '{"id":2,"op":"console-attach","replay":false}' \
  '{"id":3,"op":"console-input","data":"aGVsbG8="}' '{"id":4,"op":"stats"}' '{"id":5,"op":"turn-off"}'; do
  printf '\000%s' "$line" > "$dir/request-$i"
  i=$((i + 1))
done
printf '\001%s' '{"specVersion":2,"vmId":"0b7e5f6e-4a57-4a55-9a38-2f1a4f3ae111","name":"a","memoryMiB":64,"vcpus":1,"boot":{"kernelPath":"/k","cmdline":""},"testExitPort":false,"com1":true,"disks":[{"path":"d.qcow2","readOnly":false,"serial":"berth-slot-0"}],"nics":[{"kind":"nat","mac":"02:00:00:00:00:01","restricted":false,"portForwards":[{"protocol":"udp","hostAddress":"127.0.0.1","hostPort":5353,"guestPort":53}]}]}' > "$dir/spec-0"
