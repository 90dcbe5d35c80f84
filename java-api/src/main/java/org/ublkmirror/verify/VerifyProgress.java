package org.ublkmirror.verify;

/** Reported after each region. */
public record VerifyProgress(long regionsDone, long regionsTotal, long blocksCompared, long differingBlocks) {
}
