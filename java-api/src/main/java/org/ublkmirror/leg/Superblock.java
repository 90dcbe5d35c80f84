package org.ublkmirror.leg;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.UUID;

/**
 * The superblock of a leg: who it is, what mirror it belongs to, where its metadata lives, and
 * the generation counters that detect split brain. One 4 KiB slot; a leg holds two (A at byte 0,
 * B at byte 4096) and each update goes to the older slot with FUA, so a torn write leaves the
 * other slot intact (double buffering). The valid slot with the higher {@code seq} wins.
 *
 * <pre>
 * offset size field
 *      0    8 magic "UMIRSB01"
 *      8    4 format version (1)
 *     12    4 bytes covered by the checksum (CRC_OFF)
 *     16    8 seq: update counter, higher wins between slots
 *     24   16 volume UUID (the mirror; both legs share it)
 *     40   16 leg UUID (this leg)
 *     56    4 role: 1 primary, 2 secondary
 *     60    4 block size in bytes
 *     64    8 data offset in bytes (start of the volume's blocks on this leg)
 *     72    8 data blocks (volume size in blocks)
 *     80    8 tag journal offset in bytes
 *     88    4 tag journal length in 4 KiB blocks
 *     92    4 flags: bit 0 clean (closed cleanly), bit 1 degraded (secondary was out of date)
 *     96    8 intent record offset in bytes (two 4 KiB slots)
 *    104    4 intent region size in blocks
 *    108    4 host id of the last writer
 *    112    8 tracking log offset in bytes (two slots)
 *    120    8 tracking log slot size in bytes
 *    128    8 current generation
 *    136    8 bitmap generation: the current generation when tracking started, 0 if none
 *    144    8 last tag issued (sequence part) at the last clean close or checkpoint
 *    152   16 boot id of the machine that last opened the leg for writing
 *    168    8 creation time, ms since the epoch
 *    176   64 mirror name, UTF-8, zero padded
 *    240    4 object count (storage objects on this leg, at most MAX_OBJECTS)
 *    244    4 reserved (0)
 *    248  32n objects: id u32, flags u32, base block u64, length in blocks u64, capacity in blocks u64
 *   1272    4 CRC32C of bytes [0, 1272)
 * </pre>
 * All integers big-endian. Storage object 0 is the volume the frontend serves.
 */
public final class Superblock {
    public static final int SLOT_SIZE = 4096;
    public static final byte[] MAGIC = "UMIRSB01".getBytes(StandardCharsets.US_ASCII);
    public static final int VERSION = 1;

    static final int OFF_MAGIC = 0, OFF_VERSION = 8, OFF_CRC_COVER = 12, OFF_SEQ = 16, OFF_VOLUME = 24,
            OFF_LEG = 40, OFF_ROLE = 56, OFF_BLOCK_SIZE = 60, OFF_DATA_OFFSET = 64, OFF_DATA_BLOCKS = 72,
            OFF_JOURNAL_OFFSET = 80, OFF_JOURNAL_BLOCKS = 88, OFF_FLAGS = 92, OFF_INTENT_OFFSET = 96,
            OFF_REGION_BLOCKS = 104, OFF_HOST_ID = 108, OFF_TRACK_OFFSET = 112, OFF_TRACK_SLOT = 120,
            OFF_CURRENT_GEN = 128, OFF_BITMAP_GEN = 136, OFF_LAST_TAG = 144, OFF_BOOT_ID = 152,
            OFF_CREATED = 168, OFF_NAME = 176, NAME_LEN = 64, OFF_OBJECT_COUNT = 240, OFF_OBJECTS = 248;
    public static final int MAX_OBJECTS = 32;
    static final int OBJECT_SIZE = 32;
    public static final int OFF_CRC = OFF_OBJECTS + MAX_OBJECTS * OBJECT_SIZE; // 1272

    public static final int FLAG_CLEAN = 1, FLAG_DEGRADED = 2;

    /** A storage object on the leg: a range of the data area that may grow up to its capacity. */
    public record StorageObject(int id, int flags, long baseBlock, long lengthBlocks, long capacityBlocks) {
    }

    public long seq;
    public UUID volumeUuid;
    public UUID legUuid;
    public Role role;
    public int blockSize;
    public long dataOffset;
    public long dataBlocks;
    public long journalOffset;
    public int journalBlocks;
    public int flags;
    public long intentOffset;
    public int regionBlocks;
    public int hostId;
    public long trackOffset;
    public long trackSlotBytes;
    public long currentGen;
    public long bitmapGen;
    public long lastTag;
    public UUID bootId = new UUID(0, 0);
    public long createdMillis;
    public String name = "";
    public StorageObject[] objects = new StorageObject[0];

    public boolean clean() {
        return (flags & FLAG_CLEAN) != 0;
    }

    public Superblock copy() {
        Superblock s = new Superblock();
        s.seq = seq; s.volumeUuid = volumeUuid; s.legUuid = legUuid; s.role = role; s.blockSize = blockSize;
        s.dataOffset = dataOffset; s.dataBlocks = dataBlocks; s.journalOffset = journalOffset;
        s.journalBlocks = journalBlocks; s.flags = flags; s.intentOffset = intentOffset;
        s.regionBlocks = regionBlocks; s.hostId = hostId; s.trackOffset = trackOffset;
        s.trackSlotBytes = trackSlotBytes; s.currentGen = currentGen; s.bitmapGen = bitmapGen;
        s.lastTag = lastTag; s.bootId = bootId; s.createdMillis = createdMillis; s.name = name;
        s.objects = objects.clone();
        return s;
    }

    public StorageObject object(int id) {
        for (StorageObject o : objects) {
            if (o.id() == id) return o;
        }
        return null;
    }

    /** Encodes into a fresh 4 KiB slot image. */
    public ByteBuffer encode() {
        if (objects.length > MAX_OBJECTS) {
            throw new IllegalStateException("at most " + MAX_OBJECTS + " storage objects per leg");
        }
        ByteBuffer b = ByteBuffer.allocateDirect(SLOT_SIZE).order(ByteOrder.BIG_ENDIAN);
        b.put(OFF_MAGIC, MAGIC);
        b.putInt(OFF_VERSION, VERSION);
        b.putInt(OFF_CRC_COVER, OFF_CRC);
        b.putLong(OFF_SEQ, seq);
        putUuid(b, OFF_VOLUME, volumeUuid);
        putUuid(b, OFF_LEG, legUuid);
        b.putInt(OFF_ROLE, role.code);
        b.putInt(OFF_BLOCK_SIZE, blockSize);
        b.putLong(OFF_DATA_OFFSET, dataOffset);
        b.putLong(OFF_DATA_BLOCKS, dataBlocks);
        b.putLong(OFF_JOURNAL_OFFSET, journalOffset);
        b.putInt(OFF_JOURNAL_BLOCKS, journalBlocks);
        b.putInt(OFF_FLAGS, flags);
        b.putLong(OFF_INTENT_OFFSET, intentOffset);
        b.putInt(OFF_REGION_BLOCKS, regionBlocks);
        b.putInt(OFF_HOST_ID, hostId);
        b.putLong(OFF_TRACK_OFFSET, trackOffset);
        b.putLong(OFF_TRACK_SLOT, trackSlotBytes);
        b.putLong(OFF_CURRENT_GEN, currentGen);
        b.putLong(OFF_BITMAP_GEN, bitmapGen);
        b.putLong(OFF_LAST_TAG, lastTag);
        putUuid(b, OFF_BOOT_ID, bootId);
        b.putLong(OFF_CREATED, createdMillis);
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        b.put(OFF_NAME, n, 0, Math.min(n.length, NAME_LEN));
        b.putInt(OFF_OBJECT_COUNT, objects.length);
        for (int i = 0; i < objects.length; i++) {
            int o = OFF_OBJECTS + i * OBJECT_SIZE;
            StorageObject so = objects[i];
            b.putInt(o, so.id()).putInt(o + 4, so.flags()).putLong(o + 8, so.baseBlock())
                    .putLong(o + 16, so.lengthBlocks()).putLong(o + 24, so.capacityBlocks());
        }
        b.putInt(OFF_CRC, Crc.of(b, 0, OFF_CRC));
        return b;
    }

    /** True if the slot starts with our magic (whatever else is wrong with it). */
    public static boolean hasMagic(ByteBuffer slot) {
        byte[] m = new byte[MAGIC.length];
        slot.duplicate().get(m);
        return Arrays.equals(m, MAGIC);
    }

    /**
     * Decodes a slot. Throws {@link MetadataException} on a wrong magic, an unknown version or a
     * checksum mismatch: a torn or corrupt slot is never trusted.
     */
    public static Superblock decode(ByteBuffer slot, String where) throws MetadataException {
        ByteBuffer b = slot.duplicate().order(ByteOrder.BIG_ENDIAN);
        if (b.remaining() < SLOT_SIZE) {
            throw new MetadataException(where + ": superblock truncated");
        }
        b = b.slice().order(ByteOrder.BIG_ENDIAN);
        byte[] m = new byte[MAGIC.length];
        b.get(OFF_MAGIC, m);
        if (!Arrays.equals(m, MAGIC)) {
            throw new MetadataException(where + ": no ublk-mirror superblock (bad magic)");
        }
        int version = b.getInt(OFF_VERSION);
        if (version != VERSION) {
            throw new MetadataException(where + ": superblock format version " + version
                    + " is not supported (this mirrorctl reads version " + VERSION + ")");
        }
        if (b.getInt(OFF_CRC_COVER) != OFF_CRC || b.getInt(OFF_CRC) != Crc.of(b, 0, OFF_CRC)) {
            throw new MetadataException(where + ": superblock checksum mismatch (torn or corrupt)");
        }
        Superblock s = new Superblock();
        s.seq = b.getLong(OFF_SEQ);
        s.volumeUuid = getUuid(b, OFF_VOLUME);
        s.legUuid = getUuid(b, OFF_LEG);
        try {
            s.role = Role.of(b.getInt(OFF_ROLE));
        } catch (IllegalArgumentException e) {
            throw new MetadataException(where + ": " + e.getMessage());
        }
        s.blockSize = b.getInt(OFF_BLOCK_SIZE);
        s.dataOffset = b.getLong(OFF_DATA_OFFSET);
        s.dataBlocks = b.getLong(OFF_DATA_BLOCKS);
        s.journalOffset = b.getLong(OFF_JOURNAL_OFFSET);
        s.journalBlocks = b.getInt(OFF_JOURNAL_BLOCKS);
        s.flags = b.getInt(OFF_FLAGS);
        s.intentOffset = b.getLong(OFF_INTENT_OFFSET);
        s.regionBlocks = b.getInt(OFF_REGION_BLOCKS);
        s.hostId = b.getInt(OFF_HOST_ID);
        s.trackOffset = b.getLong(OFF_TRACK_OFFSET);
        s.trackSlotBytes = b.getLong(OFF_TRACK_SLOT);
        s.currentGen = b.getLong(OFF_CURRENT_GEN);
        s.bitmapGen = b.getLong(OFF_BITMAP_GEN);
        s.lastTag = b.getLong(OFF_LAST_TAG);
        s.bootId = getUuid(b, OFF_BOOT_ID);
        s.createdMillis = b.getLong(OFF_CREATED);
        byte[] n = new byte[NAME_LEN];
        b.get(OFF_NAME, n);
        int len = 0;
        while (len < NAME_LEN && n[len] != 0) len++;
        s.name = new String(n, 0, len, StandardCharsets.UTF_8);
        int count = b.getInt(OFF_OBJECT_COUNT);
        if (count < 0 || count > MAX_OBJECTS) {
            throw new MetadataException(where + ": superblock lists " + count + " storage objects (corrupt)");
        }
        s.objects = new StorageObject[count];
        for (int i = 0; i < count; i++) {
            int o = OFF_OBJECTS + i * OBJECT_SIZE;
            s.objects[i] = new StorageObject(b.getInt(o), b.getInt(o + 4), b.getLong(o + 8), b.getLong(o + 16), b.getLong(o + 24));
        }
        if (s.blockSize < 512 || Integer.bitCount(s.blockSize) != 1 || s.dataBlocks < 0) {
            throw new MetadataException(where + ": superblock has an impossible geometry (block size " + s.blockSize + ")");
        }
        return s;
    }

    private static void putUuid(ByteBuffer b, int off, UUID u) {
        b.putLong(off, u.getMostSignificantBits()).putLong(off + 8, u.getLeastSignificantBits());
    }

    private static UUID getUuid(ByteBuffer b, int off) {
        return new UUID(b.getLong(off), b.getLong(off + 8));
    }
}
