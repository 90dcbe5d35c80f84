package org.ublkmirror.tags;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A leg's tag table as read back from its journal: the live entries (tags above their host's
 * watermark), the watermarks, and where the ring continues.
 */
public final class TagTable {
    /** Live entries by tag. */
    public final TreeMap<Long, TagRecord> live = new TreeMap<>();
    /** Per host: every tag up to this one is retired. */
    public final Map<Integer, Long> watermarks = new HashMap<>();
    /** Per host: the highest tag seen. */
    public final Map<Integer, Long> maxTag = new HashMap<>();
    /** Sequence number for the next journal block. */
    public long nextBlockSeq = 1;
    /** Valid journal blocks found. */
    public int validBlocks;

    public List<TagRecord> liveEntries() {
        return Collections.unmodifiableList(new ArrayList<>(live.values()));
    }

    public long watermark(int host) {
        return watermarks.getOrDefault(host, 0L);
    }
}
