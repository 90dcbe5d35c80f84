package org.ublkmirror.track;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

import org.ublkmirror.leg.Store;

/**
 * Records double-buffered in a leg's metadata area: two slots, A at {@code offset} and B at
 * {@code offset + slotBytes}. Each write goes, with FUA, to the slot that does not hold the
 * newest valid record, so a write torn by power loss can only damage the older copy.
 *
 * <pre>
 * slot offset  size  field
 *           0     8  magic "UMSLOT01"
 *           8     8  sequence number, u64 (one more than the newest record when written)
 *          16     4  payload length, u32
 *          20     4  CRC32C over bytes [8, 20) and the payload, u32
 *          24     n  payload (a tracking-log record)
 * </pre>
 * The CRC covers the sequence and length too, so a flipped bit there cannot make a stale slot
 * look newest. {@link #readLatest()} returns the payload of the valid slot with the higher
 * sequence and ignores a torn or corrupt one.
 */
public final class SlotLogStore implements LogStore {
    public static final byte[] SLOT_MAGIC = "UMSLOT01".getBytes(StandardCharsets.US_ASCII);
    public static final int SLOT_HEADER = 24;
    static final int OFF_SEQ = 8;
    static final int OFF_LEN = 16;
    static final int OFF_CRC = 20;

    private final Store store;
    private final long offset;
    private final long slotBytes;
    private boolean scanned;
    private int newestSlot = -1; // -1: none valid
    private long newestSeq;

    public SlotLogStore(Store store, long offset, long slotBytes) throws IOException {
        if (slotBytes <= SLOT_HEADER || slotBytes - SLOT_HEADER > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("a tracking log slot must be between " + (SLOT_HEADER + 1) + " bytes and 2 GiB, got "
                    + slotBytes);
        }
        if (offset < 0 || offset + 2 * slotBytes > store.size()) {
            throw new IllegalArgumentException("two tracking log slots of " + slotBytes + " bytes at " + offset
                    + " do not fit in " + store.describe() + " (" + store.size() + " bytes)");
        }
        this.store = store;
        this.offset = offset;
        this.slotBytes = slotBytes;
    }

    /** Largest payload one slot holds. */
    public long capacity() {
        return slotBytes - SLOT_HEADER;
    }

    private long slotPos(int slot) {
        return offset + slot * slotBytes;
    }

    /** The payload and sequence of a valid slot, or null if the slot is empty, torn or corrupt. */
    private Object[] readSlot(int slot) throws IOException {
        ByteBuffer h = ByteBuffer.allocate(SLOT_HEADER);
        store.read(slotPos(slot), h);
        byte[] hb = h.array();
        if (!Arrays.equals(hb, 0, 8, SLOT_MAGIC, 0, 8)) {
            return null;
        }
        long seq = h.getLong(OFF_SEQ);
        long len = Integer.toUnsignedLong(h.getInt(OFF_LEN));
        if (len > capacity()) {
            return null;
        }
        ByteBuffer p = ByteBuffer.allocate((int) len);
        store.read(slotPos(slot) + SLOT_HEADER, p);
        if (h.getInt(OFF_CRC) != crc(hb, p.array())) {
            return null;
        }
        return new Object[] {seq, p.array()};
    }

    private static int crc(byte[] header, byte[] payload) {
        java.util.zip.CRC32C c = new java.util.zip.CRC32C();
        c.update(header, OFF_SEQ, OFF_CRC - OFF_SEQ);
        c.update(payload, 0, payload.length);
        return (int) c.getValue();
    }

    private byte[] scan() throws IOException {
        Object[] a = readSlot(0);
        Object[] b = readSlot(1);
        byte[] payload = null;
        newestSlot = -1;
        newestSeq = 0;
        if (a != null && (b == null || Long.compareUnsigned((Long) a[0], (Long) b[0]) >= 0)) {
            newestSlot = 0;
            newestSeq = (Long) a[0];
            payload = (byte[]) a[1];
        } else if (b != null) {
            newestSlot = 1;
            newestSeq = (Long) b[0];
            payload = (byte[]) b[1];
        }
        scanned = true;
        return payload;
    }

    @Override
    public synchronized void write(byte[] record) throws IOException {
        if (record.length > capacity()) {
            throw new IOException("tracking log record of " + record.length + " bytes does not fit in a metadata slot of "
                    + slotBytes + " bytes (" + capacity() + " for the record) on " + store.describe()
                    + "; create the leg with a larger tracking area");
        }
        if (!scanned) {
            scan();
        }
        int target = newestSlot == 0 ? 1 : 0;
        long seq = newestSlot < 0 ? 1 : newestSeq + 1;
        ByteBuffer b = ByteBuffer.allocate(SLOT_HEADER + record.length);
        b.put(SLOT_MAGIC).putLong(seq).putInt(record.length);
        b.putInt(crc(b.array(), record));
        b.put(record).flip();
        scanned = false; // if the write fails part-way, look again next time
        store.write(slotPos(target), b, true);
        newestSlot = target;
        newestSeq = seq;
        scanned = true;
    }

    @Override
    public synchronized byte[] readLatest() throws IOException {
        return scan();
    }

    @Override
    public String describe() {
        return store.describe() + "@" + offset + "(2x" + slotBytes + ")";
    }

    @Override
    public String toString() {
        return "SlotLogStore[" + describe() + "]";
    }
}
