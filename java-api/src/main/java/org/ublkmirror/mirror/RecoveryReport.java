package org.ublkmirror.mirror;

/**
 * What opening a mirror found and did. {@code cause}: "clean" (closed cleanly), "daemon-crash"
 * (same boot: tag tables compared), "power-loss" (another boot: tag tables plus intent regions).
 */
public record RecoveryReport(String cause, int liveTagsPrimary, int liveTagsSecondary, long blocksRepaired,
                             long blocksMarkedDirty, long intentRegions) {
    public String summary() {
        if (cause.equals("clean")) return "clean shutdown: nothing to repair";
        return cause + ": " + liveTagsPrimary + " live tag(s) on primary, " + liveTagsSecondary + " on secondary"
                + (intentRegions > 0 ? ", " + intentRegions + " intent region(s)" : "")
                + "; repaired " + blocksRepaired + " block(s)"
                + (blocksMarkedDirty > 0 ? ", " + blocksMarkedDirty + " block(s) left dirty for resync" : "");
    }
}
