# Copyright: (c) 2026, Stackify Retrace integration contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: may change without notice.  Which hosts of a play share their ``retrace_*`` settings, found cheaply.

A play's variables for one host (``VariableManager.get_vars``) cost 0.3 to 1.7 ms, and templating them as much again:
asked for each of 500 hosts, that is more than everything else tracking adds to a run.  But hosts in the same groups,
with no ``retrace_*`` variable of their own, see the same ``retrace_*`` values in a play -- unless a template among
them reads something only a host has (``inventory_hostname``, a host var, a fact).  So :class:`HostKeys` gives each
host a key, (the play, its groups, its own ``retrace_*`` variables), and the settings are resolved once per key
(:meth:`HostKeys.variables` says when a host's own variables make its key unique).
"""

from __future__ import annotations

import os
import typing as t

from ansible import constants

PREFIX = "retrace_"
#: names a template may read that differ from host to host even within the same groups
#: (and lookups: ``lookup('vars', 'tier')`` reads a host's variable by a name the template only holds as text)
HOST_LEVEL_NAMES = frozenset(("inventory_hostname", "inventory_hostname_short", "hostvars", "vars", "lookup", "query", "q"))
_GROUP_VARS_ONLY_PLUGINS = ("host_group_vars", "ansible.builtin.host_group_vars")


class HostKeys:
    """Keys of hosts of ``play`` (:meth:`key`), each host's variables when its key is new (:meth:`variables`)."""

    def __init__(self, play, variable_manager):
        self.play = play
        self.manager = variable_manager
        self._with_host_files = _hosts_with_host_vars_files(variable_manager)
        self._template_names: dict[str, frozenset[str]] = {}
        self._host_level_names: frozenset[str] | None = None

    def key(self, host) -> tuple:  # pylint: disable=protected-access
        """(the play, the host's groups, the host's own ``retrace_*`` values): hosts with equal keys share settings,
        unless :meth:`variables` found a template reading the host's own variables (then its key names the host)."""
        own = {name: value for name, value in host.vars.items() if name.startswith(PREFIX)}
        if self._with_host_files is None or host.name in self._with_host_files:
            own.update(_vars_plugins_retrace_values(self.manager, host))
        return (self.play._uuid, frozenset(group.name for group in host.groups),
                tuple(sorted((name, repr(value)) for name, value in own.items())))

    def variables(self, host) -> tuple[t.Mapping[str, t.Any], bool]:
        """The play's variables for ``host`` (as a task sees them before it runs), and whether another host with the
        same :meth:`key` sees the same ``retrace_*`` values (False when a template among them reads a name only the
        host has)."""
        variables = self.manager.get_vars(play=self.play, host=host)
        shared = all(self._shared_template(value, variables, host)
                     for name, value in variables.items() if name.startswith(PREFIX))
        return variables, shared

    def _shared_template(self, value: t.Any, variables: t.Mapping[str, t.Any], host, depth: int = 0) -> bool:
        if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
            return True
        if depth > 2 or self._with_host_files is None:  # another vars plugin may give any host any variable
            return False
        names = self._names_read(value)
        if names is None:
            return False
        for name in names:
            if name in HOST_LEVEL_NAMES or name.startswith("ansible_") or name in self.host_level_names():
                return False
            if not self._shared_template(variables.get(name), variables, host, depth + 1):
                return False
        return True

    def host_level_names(self) -> frozenset[str]:
        """Every variable name some host sets for itself: in the inventory, or in a ``host_vars/`` file (one host
        without it and another with it share a key, so whether a template reads one is asked of all hosts)."""
        if self._host_level_names is None:
            # pylint: disable-next=protected-access
            inventory = self.manager._inventory
            names = {name for host in inventory.hosts.values() for name in host.vars}
            for name in self._with_host_files or ():
                host = inventory.get_host(name)
                if host is not None:
                    names.update(_vars_plugins_values(self.manager, host))
            self._host_level_names = frozenset(names)
        return self._host_level_names

    def _names_read(self, text: str) -> frozenset[str] | None:
        """The variables a template reads (None: it cannot be parsed here, so it is taken as reading anything)."""
        if text not in self._template_names:
            import jinja2
            from jinja2 import meta
            try:
                self._template_names[text] = frozenset(meta.find_undeclared_variables(jinja2.Environment().parse(text)))
            except jinja2.TemplateError:
                return None
        return self._template_names[text]


def _vars_plugins_retrace_values(manager, host) -> dict[str, t.Any]:
    return {name: value for name, value in _vars_plugins_values(manager, host).items() if name.startswith(PREFIX)}


def _vars_plugins_values(manager, host) -> dict[str, t.Any]:
    """What vars plugins give ``host`` itself, from beside the inventory and beside the playbook (``host_vars/``)."""
    from ansible.vars.plugins import get_vars_from_inventory_sources, get_vars_from_path
    # pylint: disable=protected-access
    found = dict(get_vars_from_inventory_sources(manager._loader, manager._inventory._sources, [host], "task"))
    basedir = manager._loader.get_basedir()
    if basedir:
        found.update(get_vars_from_path(manager._loader, basedir, [host], "task"))
    return found


def _hosts_with_host_vars_files(manager) -> set[str] | None:
    """Names with an entry in a ``host_vars/`` directory beside an inventory source, when the only vars plugin is
    ``host_group_vars`` (whose host-level values can only come from there); None when another vars plugin is enabled,
    which may give any host values of its own: then each host is asked."""
    if any(name not in _GROUP_VARS_ONLY_PLUGINS for name in constants.VARIABLE_PLUGINS_ENABLED):
        return None
    names: set[str] = set()
    # pylint: disable-next=protected-access
    bases = [source if os.path.isdir(source) else os.path.dirname(source) for source in manager._inventory._sources]
    for base in [*bases, manager._loader.get_basedir()]:  # pylint: disable=protected-access
        try:
            entries = os.listdir(os.path.join(base, "host_vars"))
        except OSError:
            continue
        names.update(entry.rsplit(".", 1)[0] if entry.endswith((".yml", ".yaml", ".json")) else entry for entry in entries)
    return names
