package org.ublkmirror.track;

/**
 * The tracker's answer to a {@link TrackingCommand}. On {@link #REJECTED} the reason is in
 * {@link Tracker#lastRejection()}; nothing was recorded and the engine must not acknowledge the
 * write as tracked (it should fail the write or keep the secondary leg's tag-table entry).
 */
public enum TrackStatus {
    /** The blocks are in the in-memory log; durable after the next {@link Tracker#persist()}. */
    TRACKED,
    /** Not recorded: outside the volume, wrong object id, negative count, or the tracker is closed. */
    REJECTED
}
