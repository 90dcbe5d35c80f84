package org.ublkmirror.verify;

import org.ublkmirror.resync.Extent;

import java.util.List;

/**
 * What verify found.
 *
 * @param differing exact block ranges that differ, sorted and coalesced (adjacent ranges merged,
 *                  also across region boundaries)
 * @param bytesRead bytes read from both legs: for checksums computed locally, and for the exact
 *                  comparison of mismatching regions
 */
public record VerifyReport(long blocksCompared, long regionsCompared, long regionsMismatched,
                           List<Extent> differing, long bytesRead) {

    public VerifyReport {
        differing = List.copyOf(differing);
    }

    public boolean identical() {
        return differing.isEmpty();
    }

    public long differingBlocks() {
        long n = 0;
        for (Extent e : differing) {
            n += e.count();
        }
        return n;
    }
}
