package org.ublkmirror.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.frontend.StoreTarget;
import org.ublkmirror.leg.FileStore;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The hint ublk uses to serve a write on its queue thread
 * ({@link org.ublkmirror.frontend.BlockTarget#writeWouldNotWait}): a mirror says yes only for a
 * write that needs no I/O beyond the legs' page-cache writes: local legs, mapped tag journals,
 * and every region of the write already in the intent record (a region entering the record
 * costs a FUA write on both legs). Bad ranges get no; so does a decorated or remote store.
 */
class WriteWouldNotWaitTest extends MirrorFixture {

    static ByteBuffer block(long seed) {
        ByteBuffer b = ByteBuffer.allocateDirect(BS);
        while (b.hasRemaining()) b.putLong(seed * 31 + b.position());
        return b.flip();
    }

    @Test
    void yesOnlyWhenTheRegionsAreInTheIntentRecord() throws Exception {
        MirrorConfig cfg = new MirrorConfig("h", dir.resolve("p.img"), dir.resolve("s.img"), null, 1, 60_000);
        Mirror.create(cfg, 16 * REGION, BS, false, null);
        Mirror.Options o = new Mirror.Options();
        o.maxActiveRegions = 2;
        m = Mirror.open(cfg, o);
        assertFalse(m.writeWouldNotWait(0, BS), "region 0 is not in the record: its first write writes the record");
        m.write(0, block(1), false);
        assertTrue(m.writeWouldNotWait(0, BS), "region 0 is in the record now");
        assertTrue(m.writeWouldNotWait(REGION - BS, BS), "the last block of region 0");
        assertFalse(m.writeWouldNotWait(REGION - BS, 2 * BS), "a write reaching into region 1, not in the record");
        m.write(REGION, block(2), false);
        m.write(2 * REGION, block(3), false); // a record of two: region 0, the least recently used, leaves
        assertFalse(m.writeWouldNotWait(0, BS), "region 0 left the record");
        assertTrue(m.writeWouldNotWait(2 * REGION + 8 * BS, 16 * BS));
        // bad ranges: no (the write itself reports them)
        assertFalse(m.writeWouldNotWait(2 * REGION + 1, BS), "misaligned offset");
        assertFalse(m.writeWouldNotWait(2 * REGION, 100), "misaligned length");
        assertFalse(m.writeWouldNotWait(2 * REGION, 0), "empty");
        assertFalse(m.writeWouldNotWait(m.sizeBytes(), BS), "past the end");
        assertFalse(m.writeWouldNotWait(-BS, BS), "negative");
        // degraded: the secondary's part is tracked in memory, so still yes
        m.detach();
        assertTrue(m.writeWouldNotWait(2 * REGION, BS));
        m.write(2 * REGION, block(4), false);
        ResyncRunner r = m.attach(0, false);
        assertTrue(r.awaitDone(60_000));
        m.close();
        try (Inspect in = Inspect.open(cfg)) {
            assertTrue(in.verify(1 << 20).identical(), "legs identical");
        }
    }

    @Test
    void noForADecoratedStore() throws Exception {
        m = FaultyMirror.open("f");
        m.write(0, block(5), false);
        assertFalse(m.writeWouldNotWait(0, BS), "its journal appends are store writes, not memory copies");
    }

    @Test
    void aPlainFileSaysYes() throws Exception {
        Path f = dir.resolve("plain.img");
        Files.write(f, new byte[1 << 20]);
        try (FileStore s = FileStore.open(f)) {
            assertTrue(new StoreTarget(s, BS).writeWouldNotWait(0, BS));
        }
    }
}
