package org.ublkmirror.track;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.UUID;
import java.util.zip.CRC32C;

import org.roaringbitmap.longlong.Roaring64NavigableMap;

/**
 * The on-disk format of a tracking-log record: the one place that knows its bytes.
 *
 * <p>Big-endian throughout. A record is self-contained and checksummed; stores keep whole
 * records and replace them atomically.
 *
 * <pre>
 * offset  size  field
 *      0     8  magic "UMTRKLG1" (ASCII)                         {@link #OFF_MAGIC}
 *      8     4  format version, u32 = 1                           {@link #OFF_VERSION}
 *     12     4  header length in bytes, u32 = 88                  {@link #OFF_HEADER_LENGTH}
 *     16     8  record length in bytes incl. the CRC, u64         {@link #OFF_RECORD_LENGTH}
 *     24    16  volume UUID (most then least significant 64 bits) {@link #OFF_VOLUME_UUID}
 *     40     4  storage object id, u32                            {@link #OFF_OBJECT_ID}
 *     44     4  block size in bytes, u32                          {@link #OFF_BLOCK_SIZE}
 *     48     8  volume size in blocks, u64                        {@link #OFF_VOLUME_BLOCKS}
 *     56     8  sequence number, u64, +1 per persist              {@link #OFF_SEQUENCE}
 *     64     8  covered tag, u64                                  {@link #OFF_COVERED_TAG}
 *     72     8  epoch length in ms, u64                           {@link #OFF_EPOCH_MILLIS}
 *     80     4  epoch count, u32                                  {@link #OFF_EPOCH_COUNT}
 *     84     4  reserved, must be 0                               {@link #OFF_RESERVED}
 *     88        epochs, in ascending id order, each:
 *               +0   4  epoch id, u32                             {@link #EP_ID}
 *               +4   8  start time, ms since 1970, u64            {@link #EP_START}
 *              +12   8  end time (last write), ms, u64            {@link #EP_END}
 *              +20   8  number of blocks in the bitmap, u64       {@link #EP_CARDINALITY}
 *              +28   4  bitmap length in bytes, u32               {@link #EP_BITMAP_LENGTH}
 *              +32   n  bitmap: RoaringBitmap's portable 64-bit serialization
 *                       (u64 bucket count, then per bucket u32 high 32 bits and a
 *                       32-bit portable RoaringBitmap)
 *   L - 4     4  CRC32C over bytes [0, L-4), u32                   (L = record length)
 * </pre>
 *
 * <p>{@link #decode} trusts nothing: it checks length, magic, version, header length, record
 * length, the CRC, then every field and every bitmap (values inside the volume, cardinality
 * as stated, ids ascending), and throws {@link CorruptLogException} naming the failed check.
 */
public final class TrackingLogFormat {
    public static final byte[] MAGIC = "UMTRKLG1".getBytes(StandardCharsets.US_ASCII);
    public static final int VERSION = 1;

    public static final int OFF_MAGIC = 0;
    public static final int OFF_VERSION = 8;
    public static final int OFF_HEADER_LENGTH = 12;
    public static final int OFF_RECORD_LENGTH = 16;
    public static final int OFF_VOLUME_UUID = 24;
    public static final int OFF_OBJECT_ID = 40;
    public static final int OFF_BLOCK_SIZE = 44;
    public static final int OFF_VOLUME_BLOCKS = 48;
    public static final int OFF_SEQUENCE = 56;
    public static final int OFF_COVERED_TAG = 64;
    public static final int OFF_EPOCH_MILLIS = 72;
    public static final int OFF_EPOCH_COUNT = 80;
    public static final int OFF_RESERVED = 84;
    public static final int HEADER_LENGTH = 88;

    public static final int EP_ID = 0;
    public static final int EP_START = 4;
    public static final int EP_END = 12;
    public static final int EP_CARDINALITY = 20;
    public static final int EP_BITMAP_LENGTH = 28;
    public static final int EP_HEADER_LENGTH = 32;

    public static final int CRC_LENGTH = 4;

    private TrackingLogFormat() {
    }

    /**
     * Encodes a consistent snapshot of {@code log} (taken under its lock) as record number
     * {@code seq}. Bitmaps are run-optimized first (in place; it does not change their contents).
     */
    public static byte[] encode(TrackingLog log, long seq) {
        synchronized (log) {
            var epochs = log.epochList();
            byte[][] maps = new byte[epochs.size()][];
            long total = HEADER_LENGTH + CRC_LENGTH;
            for (int i = 0; i < maps.length; i++) {
                Roaring64NavigableMap bm = epochs.get(i).bitmap();
                bm.runOptimize();
                maps[i] = serialize(bm);
                total += EP_HEADER_LENGTH + maps[i].length;
            }
            if (total > Integer.MAX_VALUE - 16) {
                throw new IllegalStateException("tracking log record of " + total + " bytes is too large to encode");
            }
            ByteBuffer b = ByteBuffer.allocate((int) total); // big-endian by default
            b.put(MAGIC);
            b.putInt(VERSION);
            b.putInt(HEADER_LENGTH);
            b.putLong(total);
            b.putLong(log.volumeUuid().getMostSignificantBits());
            b.putLong(log.volumeUuid().getLeastSignificantBits());
            b.putInt(log.objectId());
            b.putInt(log.blockSize());
            b.putLong(log.volumeBlocks());
            b.putLong(seq);
            b.putLong(log.coveredTag());
            b.putLong(log.epochMillis());
            b.putInt(epochs.size());
            b.putInt(0);
            for (int i = 0; i < maps.length; i++) {
                TrackingLog.Epoch e = epochs.get(i);
                b.putInt(e.id());
                b.putLong(e.startMillis());
                b.putLong(e.endMillis());
                b.putLong(e.bitmap().getLongCardinality());
                b.putInt(maps[i].length);
                b.put(maps[i]);
            }
            b.putInt(crc(b.array(), 0, b.position()));
            return b.array();
        }
    }

    /** The sequence number stored in a record, after checking it is a valid record. */
    public static long sequenceOf(byte[] record) throws CorruptLogException {
        return decode(record).sequence();
    }

    /** Decodes and validates a record; see the class comment for what is checked. */
    public static TrackingLog decode(byte[] rec) throws CorruptLogException {
        if (rec == null) {
            throw new CorruptLogException("no tracking log record");
        }
        if (rec.length < HEADER_LENGTH + CRC_LENGTH) {
            throw new CorruptLogException("tracking log record truncated: " + rec.length + " bytes, a record has at least "
                    + (HEADER_LENGTH + CRC_LENGTH));
        }
        if (!Arrays.equals(rec, OFF_MAGIC, OFF_MAGIC + MAGIC.length, MAGIC, 0, MAGIC.length)) {
            throw new CorruptLogException("not a tracking log record: bad magic " + printable(rec, OFF_MAGIC, 8)
                    + " (expected UMTRKLG1)");
        }
        ByteBuffer b = ByteBuffer.wrap(rec);
        int version = b.getInt(OFF_VERSION);
        if (version != VERSION) {
            throw new CorruptLogException("tracking log format version " + Integer.toUnsignedString(version)
                    + " is not supported; this build reads version " + VERSION);
        }
        int headerLength = b.getInt(OFF_HEADER_LENGTH);
        if (headerLength != HEADER_LENGTH) {
            throw new CorruptLogException("tracking log header length " + Integer.toUnsignedString(headerLength)
                    + " is wrong for version " + VERSION + " (expected " + HEADER_LENGTH + ")");
        }
        long recordLength = b.getLong(OFF_RECORD_LENGTH);
        if (recordLength > rec.length) {
            throw new CorruptLogException("tracking log record truncated: header says " + Long.toUnsignedString(recordLength)
                    + " bytes, only " + rec.length + " present");
        }
        if (recordLength != rec.length) {
            throw new CorruptLogException("tracking log record length mismatch: header says " + recordLength
                    + " bytes, " + rec.length + " present");
        }
        int stored = b.getInt(rec.length - CRC_LENGTH);
        int actual = crc(rec, 0, rec.length - CRC_LENGTH);
        if (stored != actual) {
            throw new CorruptLogException(String.format(
                    "tracking log record checksum mismatch (stored CRC32C %08x, computed %08x): torn or corrupt", stored, actual));
        }
        UUID uuid = new UUID(b.getLong(OFF_VOLUME_UUID), b.getLong(OFF_VOLUME_UUID + 8));
        int objectId = b.getInt(OFF_OBJECT_ID);
        int blockSize = b.getInt(OFF_BLOCK_SIZE);
        long volumeBlocks = b.getLong(OFF_VOLUME_BLOCKS);
        long seq = b.getLong(OFF_SEQUENCE);
        long covered = b.getLong(OFF_COVERED_TAG);
        long epochMillis = b.getLong(OFF_EPOCH_MILLIS);
        int epochCount = b.getInt(OFF_EPOCH_COUNT);
        if (b.getInt(OFF_RESERVED) != 0) {
            throw new CorruptLogException("tracking log reserved field is not zero: written by a newer version?");
        }
        TrackingLog log;
        try {
            log = new TrackingLog(uuid, objectId, blockSize, volumeBlocks, epochMillis);
        } catch (IllegalArgumentException e) {
            throw new CorruptLogException("tracking log header is inconsistent: " + e.getMessage());
        }
        log.setCoveredTag(covered);
        log.setSequence(seq);
        int end = rec.length - CRC_LENGTH;
        b.position(HEADER_LENGTH).limit(end);
        if (epochCount < 0) {
            throw new CorruptLogException("tracking log epoch count " + Integer.toUnsignedString(epochCount) + " is impossible");
        }
        long prevId = 0;
        try {
            for (int i = 0; i < epochCount; i++) {
                int id = b.getInt();
                long start = b.getLong();
                long stop = b.getLong();
                long card = b.getLong();
                int len = b.getInt();
                if (id <= prevId) {
                    throw new CorruptLogException("tracking log epoch " + i + " has id " + Integer.toUnsignedString(id)
                            + ", not above the previous id " + prevId);
                }
                prevId = id;
                if (stop < start) {
                    throw new CorruptLogException("tracking log epoch " + id + " ends (" + stop + ") before it starts (" + start + ")");
                }
                if (len < 0 || len > b.remaining()) {
                    throw new CorruptLogException("tracking log epoch " + id + " bitmap of " + Integer.toUnsignedString(len)
                            + " bytes runs past the end of the record");
                }
                Roaring64NavigableMap bm = new Roaring64NavigableMap();
                ByteArrayInputStream in = new ByteArrayInputStream(rec, b.position(), len);
                try {
                    bm.deserializePortable(new DataInputStream(in));
                } catch (IOException | RuntimeException e) {
                    throw new CorruptLogException("tracking log epoch " + id + " bitmap does not decode: " + e, e);
                }
                if (in.available() != 0) {
                    throw new CorruptLogException("tracking log epoch " + id + " bitmap length " + len + " disagrees with its contents");
                }
                b.position(b.position() + len);
                if (bm.getLongCardinality() != card) {
                    throw new CorruptLogException("tracking log epoch " + id + " holds " + bm.getLongCardinality()
                            + " blocks, its header says " + card);
                }
                if (card == 0) {
                    throw new CorruptLogException("tracking log epoch " + id + " is empty (empty epochs are never written)");
                }
                long first = bm.select(0);
                long last = bm.select(card - 1);
                if (first < 0 || last >= volumeBlocks) {
                    throw new CorruptLogException("tracking log epoch " + id + " has blocks " + first + ".." + last
                            + " outside the volume of " + volumeBlocks + " blocks");
                }
                log.addDecodedEpoch(id, start, stop, bm);
            }
        } catch (BufferUnderflowException e) {
            throw new CorruptLogException("tracking log record truncated inside its epochs");
        }
        if (b.remaining() != 0) {
            throw new CorruptLogException("tracking log record has " + b.remaining() + " unexplained bytes after its epochs");
        }
        return log;
    }

    static byte[] serialize(Roaring64NavigableMap bm) {
        try {
            ByteArrayDataOutput out = new ByteArrayDataOutput((int) Math.min(Integer.MAX_VALUE - 16, bm.serializedSizeInBytes() + 16));
            bm.serializePortable(out);
            return out.toByteArray();
        } catch (IOException e) {
            throw new UncheckedIOException(e); // in-memory output: cannot happen
        }
    }

    static int crc(byte[] a, int off, int len) {
        CRC32C c = new CRC32C();
        c.update(a, off, len);
        return (int) c.getValue();
    }

    private static String printable(byte[] a, int off, int len) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = off; i < off + len; i++) {
            int ch = a[i] & 0xff;
            sb.append(ch >= 0x20 && ch < 0x7f ? String.valueOf((char) ch) : String.format("\\x%02x", ch));
        }
        return sb.append('"').toString();
    }
}
