"""Hydra plugins that put the user's own config folders first on the harness's search path:
./conf (config groups: conf/cell/mine.yaml, conf/remedy/...) and ./experiments (experiment files,
seen by Hydra as the group `experiment`). Only for the harness's own app (its primary config folder);
any other Hydra app in the same environment is left alone. The work is in harness.cli.paths.
"""

import os
from typing import List, Optional

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

GROUP = "experiment"


class ExperimentsFolder(ConfigSource):
    """A folder of experiment files (experiments/NAME.yaml) as Hydra's config group `experiment`."""

    @staticmethod
    def scheme() -> str:
        return "harness-experiments"

    def _real(self, config_path: str) -> Optional[str]:
        """experiment/NAME.yaml -> <folder>/NAME.yaml; experiment -> <folder>; anything else: None."""
        group, _, rest = config_path.strip("/").partition("/")
        if group != GROUP:
            return None
        return os.path.join(self.path, rest) if rest else self.path

    def load_config(self, config_path: str) -> ConfigResult:
        real = self._real(self._normalize_file_name(config_path))
        if real is None or not os.path.isfile(real):
            raise ConfigLoadError(f"Config not found : {config_path} in {self.path}")
        with open(real, encoding="utf-8") as f:
            header = ConfigSource._get_header_dict(f.read(512))
            f.seek(0)
            return ConfigResult(
                config=OmegaConf.load(f), path=f"{self.scheme()}://{self.path}", provider=self.provider, header=header
            )

    def available(self) -> bool:
        return os.path.isdir(self.path)

    def is_group(self, config_path: str) -> bool:
        return self.available() and config_path.strip("/") in ("", GROUP)

    def is_config(self, config_path: str) -> bool:
        real = self._real(self._normalize_file_name(config_path))
        return real is not None and os.path.isfile(real)

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        if not self.available():
            return []
        if config_path.strip("/") == "":
            return [GROUP] if results_filter in (None, ObjectType.GROUP) else []
        if config_path.strip("/") != GROUP:
            return []
        files: List[str] = []
        for name in os.listdir(self.path):
            self._list_add_result(
                files=files, file_path=f"{GROUP}/{name}", file_name=name, results_filter=results_filter
            )
        return sorted(set(files))


class UserConfigs(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        main = [e.path.split("://")[-1] for e in search_path.get_path() if e.provider == "main"]
        if not main or os.path.join("harness", "conf") not in main[0]:  # another Hydra app: not ours to touch
            return
        try:
            from harness.cli.paths import CONF_DIR, user_dirs
        except ImportError:
            return
        if os.path.realpath(main[0]) != str(CONF_DIR.resolve()):
            return
        user = user_dirs()
        # Prepended: the user's files come before the packaged ones (./conf first of all).
        if "experiments" in user:
            search_path.prepend("harness-user", f"{ExperimentsFolder.scheme()}://{user['experiments']}")
        if "conf" in user:
            search_path.prepend("harness-user", f"file://{user['conf']}")
