package org.ublkmirror.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.Superblock.StorageObject;
import org.ublkmirror.tags.TagJournal;
import org.ublkmirror.tags.TagRecord;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.*;

/** Several storage objects on one pair of legs; writes that extend an object; tag entries name the object. */
class StorageObjectTest {
    final Map<String, FaultyStore> stores = new HashMap<>();
    final MirrorConfig cfg = new MirrorConfig("o", Path.of("/o/p"), Path.of("/o/s"), null, 1, 60_000);

    Mirror.Options opts(UUID boot) {
        Mirror.Options o = new Mirror.Options();
        o.storeOpener = p -> stores.get(p).reopen();
        o.bootId = boot;
        o.watermarkTickMillis = 0;
        o.trackPersistMillis = 0;
        return o;
    }

    static ByteBuffer blocks(int n, int value) {
        ByteBuffer b = ByteBuffer.allocateDirect(n * 4096);
        for (int i = 0; i < n; i++) b.putInt(i * 4096, value + i);
        return b;
    }

    @Test
    void objectsExtendAndCrashRepairFindsTheirBlocks() throws Exception {
        stores.put(cfg.primary(), new FaultyStore("p", 4 << 20));
        stores.put(cfg.secondary(), new FaultyStore("s", 4 << 20));
        Mirror.create(cfg, 64 * 4096, 4096, false, p -> stores.get(p).reopen(), 16, 8);
        assertThrows(IllegalArgumentException.class, () -> Mirror.defineObjects(cfg, p -> stores.get(p).reopen(),
                new StorageObject(0, 0, 0, 16, 40), new StorageObject(1, 0, 32, 0, 32)), "overlap must be refused");
        Mirror.defineObjects(cfg, p -> stores.get(p).reopen(),
                new StorageObject(0, 0, 0, 16, 32), new StorageObject(7, 0, 32, 0, 32));
        UUID boot = UUID.randomUUID();
        Mirror m = Mirror.open(cfg, opts(boot));
        assertEquals(16 * 4096, m.sizeBytes());
        // object 7 starts empty; a write extends it
        m.forker().write(7, 0, blocks(4, 100), false);
        assertEquals(4, m.primary().superblock().object(7).lengthBlocks());
        assertEquals(4, m.secondary().superblock().object(7).lengthBlocks(), "extension must reach both legs");
        assertThrows(IllegalArgumentException.class, () -> m.forker().read(7, 4, ByteBuffer.allocateDirect(4096)), "past the length");
        assertThrows(IllegalArgumentException.class, () -> m.forker().write(7, 31, blocks(2, 0), false), "past the capacity");
        ByteBuffer r = ByteBuffer.allocateDirect(4096);
        m.forker().read(7, 2, r);
        assertEquals(102, r.getInt(0));
        // the object's blocks sit at base 32 of the volume on both legs
        ByteBuffer raw = ByteBuffer.allocateDirect(4096);
        m.secondary().data().read(34, raw);
        assertEquals(102, raw.getInt(0));

        // crash in the middle of a write to object 7: the secondary misses it
        FaultyStore.CrashSwitch sw = new FaultyStore.CrashSwitch(3); // intent? no (region known), journal x2, primary data
        stores.get(cfg.primary()).setCrashSwitch(sw);
        stores.get(cfg.secondary()).setCrashSwitch(sw);
        try {
            m.forker().write(7, 1, blocks(2, 500), false);
        } catch (java.io.IOException expected) {
            // the process "died" during the write
        }
        m.abandon();
        stores.replaceAll((k, v) -> v.daemonCrash());
        boolean entryNamesObject = false;
        try (Inspect in = Inspect.open(cfg, p -> stores.get(p).reopen())) {
            for (TagRecord t : TagJournal.scan(in.primary).live.values()) {
                entryNamesObject |= t.objectId() == 7 && t.startBlock() == 1 && t.blockCount() == 2;
            }
        }
        assertTrue(entryNamesObject, "the live tag entry names object 7, blocks 1+2");
        Mirror m2 = Mirror.open(cfg, opts(boot));
        assertEquals("daemon-crash", m2.recovery().cause());
        assertEquals(2, m2.recovery().blocksRepaired(), m2.recovery().summary());
        long off = m2.primary().superblock().dataOffset;
        for (int b = 0; b < 64; b++) {
            assertTrue(stores.get(cfg.primary()).sameBytes(off + b * 4096L, stores.get(cfg.secondary()), off + b * 4096L, 4096),
                    "legs differ at volume block " + b);
        }
        m2.close();
    }
}
