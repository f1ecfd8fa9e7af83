// The last N bytes of console output, replayed to a console that attaches later.
export class Scrollback {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(readonly capacity: number) {}

  push(data: Uint8Array): void {
    let chunk = Buffer.from(data);
    if (chunk.length >= this.capacity) {
      chunk = chunk.subarray(chunk.length - this.capacity);
      this.chunks = [];
      this.size = 0;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.capacity) {
      const first = this.chunks[0];
      if (!first) break;
      const excess = this.size - this.capacity;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
      }
    }
  }

  get length(): number {
    return this.size;
  }

  contents(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }
}
