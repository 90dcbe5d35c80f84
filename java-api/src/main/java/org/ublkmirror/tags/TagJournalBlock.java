package org.ublkmirror.tags;

import org.ublkmirror.leg.Crc;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import java.util.zip.CRC32C;

/**
 * One 4 KiB block of a leg's tag journal: a group commit of tag table entries, plus the
 * retirement watermark of the host that wrote it. The journal is a ring of these; see
 * {@link TagJournal}.
 *
 * <pre>
 * offset size field
 *      0    8 magic "UMTAGJ01"
 *      8    2 format version (1)
 *     10    2 record count n (at most MAX_RECORDS)
 *     12    4 host id
 *     16    8 block sequence number (ring position = seq mod ring length)
 *     24    8 watermark: every tag of this host up to it is retired (on both legs, or in the tracking log)
 *     32   16 volume UUID (blocks of another mirror, or of an earlier create, are ignored)
 *     48  28n records: tag u64, storage object id u32, start block u64, block count u64
 *   4092    4 CRC32C of bytes [0, 48 + 28n): the header and the records only
 * </pre>
 * Big-endian. Bytes between the last record and the CRC are not part of the block (they may hold
 * an older block's records: the ring is not cleared), so an append writes only what it uses.
 * A block whose magic, version, volume or checksum does not match is not part of the table (a
 * torn journal write loses only its own group, whose data writes were not yet issued).
 */
public final class TagJournalBlock {
    public static final int SIZE = 4096;
    public static final byte[] MAGIC = "UMTAGJ01".getBytes(StandardCharsets.US_ASCII);
    public static final int VERSION = 1;
    static final int OFF_MAGIC = 0, OFF_VERSION = 8, OFF_COUNT = 10, OFF_HOST = 12, OFF_SEQ = 16,
            OFF_WATERMARK = 24, OFF_VOLUME = 32, OFF_RECORDS = 48, RECORD_SIZE = 28, OFF_CRC = SIZE - 4;
    public static final int MAX_RECORDS = (OFF_CRC - OFF_RECORDS) / RECORD_SIZE; // 144

    public final int hostId;
    public final long seq;
    public final long watermark;
    public final UUID volume;
    public final List<TagRecord> records;

    public TagJournalBlock(int hostId, long seq, long watermark, UUID volume, List<TagRecord> records) {
        if (records.size() > MAX_RECORDS) {
            throw new IllegalArgumentException(records.size() + " records do not fit a journal block (max " + MAX_RECORDS + ")");
        }
        this.hostId = hostId;
        this.seq = seq;
        this.watermark = watermark;
        this.volume = volume;
        this.records = records;
    }

    /** Bytes of header and records: what the CRC covers and what an append must write (plus the CRC). */
    public int usedBytes() {
        return usedBytes(records.size());
    }

    /**
     * Encodes into {@code b} (SIZE bytes; position 0 and limit SIZE on return). Bytes between
     * {@link #usedBytes()} and the CRC are left as they were.
     */
    public ByteBuffer encodeInto(ByteBuffer b) {
        encodeHeader(b, hostId, seq, watermark, volume, records.size());
        for (int i = 0; i < records.size(); i++) {
            TagRecord r = records.get(i);
            encodeRecord(b, i, r.tag(), r.objectId(), r.startBlock(), r.blockCount());
        }
        seal(b, records.size(), new CRC32C());
        return b;
    }

    // The encoding in steps, for writers that keep no block object (TagJournal.appendOne):
    // encodeHeader, then encodeRecord for records 0..n-1, then seal. The bytes are those of encodeInto.

    /** Clears {@code b} (big-endian from now on) and writes the header of a block of {@code n} records. */
    static void encodeHeader(ByteBuffer b, int hostId, long seq, long watermark, UUID volume, int n) {
        if (n > MAX_RECORDS) {
            throw new IllegalArgumentException(n + " records do not fit a journal block (max " + MAX_RECORDS + ")");
        }
        b.clear();
        b.order(ByteOrder.BIG_ENDIAN);
        b.putLong(OFF_VERSION, 0).putLong(OFF_SEQ, 0);
        b.put(OFF_MAGIC, MAGIC);
        b.putShort(OFF_VERSION, (short) VERSION);
        b.putShort(OFF_COUNT, (short) n);
        b.putInt(OFF_HOST, hostId);
        b.putLong(OFF_SEQ, seq);
        b.putLong(OFF_WATERMARK, watermark);
        b.putLong(OFF_VOLUME, volume.getMostSignificantBits()).putLong(OFF_VOLUME + 8, volume.getLeastSignificantBits());
    }

    /** Writes record {@code i}. */
    static void encodeRecord(ByteBuffer b, int i, long tag, int objectId, long startBlock, long blockCount) {
        int o = OFF_RECORDS + i * RECORD_SIZE;
        b.putLong(o, tag).putInt(o + 8, objectId).putLong(o + 12, startBlock).putLong(o + 20, blockCount);
    }

    /**
     * Writes the CRC of a block of {@code n} records; position 0 and limit SIZE on return. Moves
     * {@code b}'s position and limit meanwhile (as encodeHeader did): {@code b} is the caller's own.
     */
    static void seal(ByteBuffer b, int n, CRC32C crc) {
        crc.reset();
        b.limit(OFF_RECORDS + n * RECORD_SIZE).position(0);
        crc.update(b);
        b.limit(SIZE).position(0);
        b.putInt(OFF_CRC, (int) crc.getValue());
    }

    /** Bytes of header and records of a block of {@code n} records. */
    static int usedBytes(int n) {
        return OFF_RECORDS + n * RECORD_SIZE;
    }

    /** Decodes a block, or returns null when it is not a valid block of this volume. */
    public static TagJournalBlock decode(ByteBuffer src, UUID volume) {
        ByteBuffer b = src.duplicate().order(ByteOrder.BIG_ENDIAN).slice().order(ByteOrder.BIG_ENDIAN);
        if (b.remaining() < SIZE) return null;
        byte[] m = new byte[MAGIC.length];
        b.get(OFF_MAGIC, m);
        if (!Arrays.equals(m, MAGIC) || b.getShort(OFF_VERSION) != VERSION) return null;
        int n = b.getShort(OFF_COUNT);
        if (n < 0 || n > MAX_RECORDS) return null;
        if (b.getInt(OFF_CRC) != Crc.of(b, 0, OFF_RECORDS + n * RECORD_SIZE)) return null;
        UUID v = new UUID(b.getLong(OFF_VOLUME), b.getLong(OFF_VOLUME + 8));
        if (!v.equals(volume)) return null;
        List<TagRecord> recs = new ArrayList<>(n);
        int o = OFF_RECORDS;
        for (int i = 0; i < n; i++, o += RECORD_SIZE) {
            recs.add(new TagRecord(b.getLong(o), b.getInt(o + 8), b.getLong(o + 12), b.getLong(o + 20)));
        }
        return new TagJournalBlock(b.getInt(OFF_HOST), b.getLong(OFF_SEQ), b.getLong(OFF_WATERMARK), v, recs);
    }
}
