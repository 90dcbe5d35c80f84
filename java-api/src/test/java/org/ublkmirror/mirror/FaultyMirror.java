package org.ublkmirror.mirror;

import org.ublkmirror.leg.FaultyStore;

import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

/** A small mirror (64 blocks of 4 KiB) whose legs are in-memory {@link FaultyStore}s: a decorated, not a plain-file, leg. */
final class FaultyMirror {
    private FaultyMirror() {
    }

    static Mirror open(String name) throws IOException {
        Map<String, FaultyStore> stores = new HashMap<>();
        MirrorConfig cfg = new MirrorConfig(name, Path.of("/" + name + "/p"), Path.of("/" + name + "/s"), null, 1, 60_000);
        stores.put(cfg.primary(), new FaultyStore("p", 4 << 20));
        stores.put(cfg.secondary(), new FaultyStore("s", 4 << 20));
        Mirror.create(cfg, 64 * 4096, 4096, false, p -> stores.get(p).reopen(), 16, 8);
        Mirror.Options o = new Mirror.Options();
        o.storeOpener = p -> stores.get(p).reopen();
        return Mirror.open(cfg, o);
    }
}
