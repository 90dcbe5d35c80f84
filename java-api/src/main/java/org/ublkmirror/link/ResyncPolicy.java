package org.ublkmirror.link;

import java.util.Locale;

/**
 * What happens when a lost secondary answers again.
 *
 * <ul>
 * <li>{@link #AUTO} (the default): reconnect, attach, resync the tracked blocks, as DRBD does on
 * reconnect (its connection state machine retries the peer on its own and starts the resync
 * whenever the generation identifiers show a plain outage). Safe because the generations tell a
 * plain outage from split brain, and split brain always refuses (DRBD's after-sb defaults to
 * disconnect the same way).</li>
 * <li>{@link #MANUAL}: the secondary is only probed (connect, read its superblock, check it is this
 * mirror's, disconnect) so status can say it is reachable; the operator starts the resync with
 * {@code mirrorctl attach}, e.g. to choose when a WAN link carries the resync traffic.</li>
 * </ul>
 */
public enum ResyncPolicy {
    AUTO, MANUAL;

    public static ResyncPolicy parse(String s) {
        for (ResyncPolicy p : values()) {
            if (p.name().equalsIgnoreCase(s == null ? "" : s.trim())) return p;
        }
        throw new IllegalArgumentException("resync policy '" + s + "' is unknown; use auto or manual");
    }

    public String lower() {
        return name().toLowerCase(Locale.ROOT);
    }
}
