package org.ublkmirror.track;

/**
 * One write, as the engine reports it to the {@link Tracker} while the secondary is offline.
 *
 * @param tag        the write's tag (see the tag table); the tracker remembers the highest one it has seen
 * @param objectId   the storage object (volume) written; must match the tracker's log
 * @param startBlock first block written
 * @param blockCount number of blocks written (0 is accepted and records nothing)
 * @param timeMillis wall-clock time of the write, milliseconds since the epoch
 */
public record TrackingCommand(long tag, int objectId, long startBlock, long blockCount, long timeMillis) {
}
