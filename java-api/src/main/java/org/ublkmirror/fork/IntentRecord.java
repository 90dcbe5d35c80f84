package org.ublkmirror.fork;

import org.ublkmirror.leg.Crc;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Superblock;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.TreeSet;
import java.util.UUID;

/**
 * The intent record: which regions of the volume may hold writes that are not yet durable on
 * both legs. Written with FUA before the first write to a region that is not in it, so after a
 * power loss (when the page cache, and with it unflushed tag journal blocks, is gone) recovery
 * copies at most these regions. Like DRBD's activity log and md's write-intent bitmap, but
 * sized by the hot set, not by the volume. Two 4 KiB slots at {@code intentOffset}; the valid
 * one with the higher seq wins.
 *
 * <pre>
 * offset size field
 *      0    8 magic "UMINTNT1"
 *      8    4 format version (1)
 *     12    4 region count n (at most MAX_REGIONS)
 *     16    8 seq
 *     24   16 volume UUID
 *     40    4 region size in blocks
 *     44    4 reserved (0)
 *     48   8n region numbers (region r covers blocks [r * regionBlocks, (r+1) * regionBlocks))
 *   4092    4 CRC32C of bytes [0, 4092)
 * </pre>
 */
public final class IntentRecord {
    public static final int SIZE = 4096;
    public static final byte[] MAGIC = "UMINTNT1".getBytes(StandardCharsets.US_ASCII);
    public static final int VERSION = 1;
    static final int OFF_MAGIC = 0, OFF_VERSION = 8, OFF_COUNT = 12, OFF_SEQ = 16, OFF_VOLUME = 24,
            OFF_REGION_BLOCKS = 40, OFF_REGIONS = 48, OFF_CRC = SIZE - 4;
    public static final int MAX_REGIONS = (OFF_CRC - OFF_REGIONS) / 8; // 505

    public final long seq;
    public final UUID volume;
    public final int regionBlocks;
    public final TreeSet<Long> regions;

    public IntentRecord(long seq, UUID volume, int regionBlocks, TreeSet<Long> regions) {
        if (regions.size() > MAX_REGIONS) {
            throw new IllegalArgumentException(regions.size() + " regions do not fit an intent record");
        }
        this.seq = seq;
        this.volume = volume;
        this.regionBlocks = regionBlocks;
        this.regions = regions;
    }

    public ByteBuffer encode() {
        ByteBuffer b = ByteBuffer.allocateDirect(SIZE).order(ByteOrder.BIG_ENDIAN);
        b.put(OFF_MAGIC, MAGIC);
        b.putInt(OFF_VERSION, VERSION);
        b.putInt(OFF_COUNT, regions.size());
        b.putLong(OFF_SEQ, seq);
        b.putLong(OFF_VOLUME, volume.getMostSignificantBits()).putLong(OFF_VOLUME + 8, volume.getLeastSignificantBits());
        b.putInt(OFF_REGION_BLOCKS, regionBlocks);
        int o = OFF_REGIONS;
        for (long r : regions) {
            b.putLong(o, r);
            o += 8;
        }
        b.putInt(OFF_CRC, Crc.of(b, 0, OFF_CRC));
        return b;
    }

    /** Null when the slot holds no valid record of this volume (never written, torn, or foreign). */
    public static IntentRecord decode(ByteBuffer src, UUID volume) {
        ByteBuffer b = src.duplicate().slice().order(ByteOrder.BIG_ENDIAN);
        byte[] m = new byte[MAGIC.length];
        b.get(OFF_MAGIC, m);
        if (!Arrays.equals(m, MAGIC) || b.getInt(OFF_VERSION) != VERSION || b.getInt(OFF_CRC) != Crc.of(b, 0, OFF_CRC)) {
            return null;
        }
        UUID v = new UUID(b.getLong(OFF_VOLUME), b.getLong(OFF_VOLUME + 8));
        int n = b.getInt(OFF_COUNT);
        if (!v.equals(volume) || n < 0 || n > MAX_REGIONS) return null;
        TreeSet<Long> regions = new TreeSet<>();
        for (int i = 0; i < n; i++) regions.add(b.getLong(OFF_REGIONS + 8 * i));
        return new IntentRecord(b.getLong(OFF_SEQ), v, b.getInt(OFF_REGION_BLOCKS), regions);
    }

    /** Reads the newer valid slot of a leg, or null. */
    public static IntentRecord read(Leg leg) throws IOException {
        Superblock sb = leg.superblock();
        IntentRecord best = null;
        for (int slot = 0; slot < 2; slot++) {
            ByteBuffer b = ByteBuffer.allocateDirect(SIZE);
            leg.store().read(sb.intentOffset + (long) slot * SIZE, b);
            b.flip();
            IntentRecord r = decode(b, sb.volumeUuid);
            if (r != null && (best == null || r.seq > best.seq)) best = r;
        }
        return best;
    }

    /** Writes into the slot for this seq (odd: A, even: B), with FUA. */
    public void write(Leg leg, boolean fua) throws IOException {
        Superblock sb = leg.superblock();
        leg.store().write(sb.intentOffset + ((seq & 1) == 1 ? 0 : SIZE), encode(), fua);
    }
}
