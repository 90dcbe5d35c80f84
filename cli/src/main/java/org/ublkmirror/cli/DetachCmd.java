package org.ublkmirror.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Parameters;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "detach", description = "Take the secondary offline: writes go to the primary and are recorded in the tracking log.")
final class DetachCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Override
    public Integer call() throws Exception {
        common.load(name);
        Map<String, Object> req = new LinkedHashMap<>();
        req.put("verb", "detach");
        Control.call(name, req, null);
        System.out.println(name + ": secondary detached; tracking writes ('mirrorctl log " + name + "' shows them)");
        return 0;
    }
}
