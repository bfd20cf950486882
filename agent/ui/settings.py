"""The Settings dialog: token driver, port, language, start options, approved web pages.

What an administrator set for the machine is shown but locked, with the reason; the officer's
own approved pages can be removed, the administrator's cannot. The dialog only edits values:
the app saves them through the core's settings store and pairing manager.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from kyso.agent.config import KnownModule
from kyso.agent.ui.dialogs import DIALOG_MIN_WIDTH, format_fingerprint
from kyso.agent.ui.widgets import fit_to_text, keep_buttons_whole, label, t

LANGUAGE_NAMES = (("vi", "Tiếng Việt"), ("en", "English"))


@dataclass(frozen=True)
class SettingsValues:
    module: str | None  # None: the first detected driver
    module_locked: bool  # set in the machine config
    port: int
    port_locked: bool
    language: str
    start_at_login: bool
    listen_at_launch: bool


@dataclass(frozen=True)
class OriginRow:
    origin: str
    fingerprint: str
    machine: bool  # set by the administrator: not removable here


# Removes an officer-approved origin off the Qt thread (the keyring may take its time), then
# calls ``done`` on the Qt thread with an error text to show, or None when it is removed.
RemoveOrigin = Callable[[str, Callable[[str | None], None]], None]


class SettingsDialog(QDialog):
    def __init__(
        self,
        values: SettingsValues,
        modules: Sequence[KnownModule],
        origins: Sequence[OriginRow],
        remove_origin: RemoveOrigin | None,
        language: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.initial = values
        self.language = language
        self._remove_origin = remove_origin
        self.setWindowTitle(t("settings_title", language))
        layout = QVBoxLayout(self)

        # --- token driver -----------------------------------------------------------------
        driver = QGroupBox(t("settings_module", language))
        driver_layout = QVBoxLayout(driver)
        self.module_combo = QComboBox()
        self.module_combo.setObjectName("module")
        self.module_combo.addItem(t("settings_module_auto", language), None)
        for module in modules:
            self.module_combo.addItem(f"{module.name} — {module.path}", module.path)
        if values.module is not None and self.module_combo.findData(values.module) < 0:
            self.module_combo.addItem(values.module, values.module)
        self.module_combo.setCurrentIndex(max(self.module_combo.findData(values.module), 0))
        self.browse_button = QPushButton(t("settings_module_browse", language))
        self.browse_button.setAutoDefault(False)
        self.browse_button.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.module_combo, 1)
        row.addWidget(self.browse_button)
        driver_layout.addLayout(row)
        self.module_note = label(name="module_note")
        driver_layout.addWidget(self.module_note)
        if values.module_locked:
            self.module_combo.setEnabled(False)
            self.browse_button.setEnabled(False)
            self.module_note.setText(t("settings_module_locked", language))
        else:
            self.module_note.setText(t("settings_module_note", language))
        layout.addWidget(driver)

        # --- connection, language, start ------------------------------------------------------
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.port_spin = QSpinBox()
        self.port_spin.setObjectName("port")
        self.port_spin.setRange(1024, 65535)
        self.port_spin.setValue(values.port)
        self.port_spin.setEnabled(not values.port_locked)
        port_row = QVBoxLayout()
        port_row.addWidget(self.port_spin)
        if values.port_locked:
            port_row.addWidget(label(t("settings_port_locked", language), name="port_note"))
        form.addRow(label(t("settings_port", language), wrap=False), port_row)
        self.language_combo = QComboBox()
        self.language_combo.setObjectName("language")
        for code, name in LANGUAGE_NAMES:
            self.language_combo.addItem(name, code)
        self.language_combo.setCurrentIndex(max(self.language_combo.findData(values.language), 0))
        form.addRow(label(t("settings_language", language), wrap=False), self.language_combo)
        layout.addLayout(form)
        self.start_at_login = QCheckBox(t("settings_start_at_login", language))
        self.start_at_login.setChecked(values.start_at_login)
        self.listen_at_launch = QCheckBox(t("settings_listen_at_launch", language))
        self.listen_at_launch.setChecked(values.listen_at_launch)
        layout.addWidget(self.start_at_login)
        layout.addWidget(self.listen_at_launch)

        # --- approved pages -----------------------------------------------------------------
        pages = QGroupBox(t("settings_origins", language))
        pages_layout = QVBoxLayout(pages)
        self.origin_list = QListWidget()
        self.origin_list.setObjectName("origins")
        self.origin_list.setMinimumHeight(110)
        for row_data in origins:
            suffix = t(
                "settings_origin_machine" if row_data.machine else "settings_origin_user", language
            )
            text = f"{row_data.origin} — {suffix}\n{format_fingerprint(row_data.fingerprint)}"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, row_data)
            self.origin_list.addItem(item)
        self.remove_button = QPushButton(t("settings_origin_remove", language))
        self.remove_button.setObjectName("remove_origin")
        self.remove_button.setAutoDefault(False)
        self.remove_button.setEnabled(False)
        self.remove_button.clicked.connect(self._remove)
        self.origin_list.currentItemChanged.connect(self._selection_changed)
        self.origin_note = label(name="origin_note")
        self.origin_note.setVisible(False)
        pages_layout.addWidget(self.origin_list)
        remove_row = QHBoxLayout()
        remove_row.addWidget(self.origin_note, 1)
        remove_row.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)
        pages_layout.addLayout(remove_row)
        if not origins:
            pages_layout.addWidget(label(t("settings_no_origins", language)))
        layout.addWidget(pages)

        # --- buttons --------------------------------------------------------------------------
        self.cancel_button = QPushButton(t("cancel", language))
        self.save_button = QPushButton(t("save", language))
        self.save_button.setObjectName("save")
        self.save_button.setDefault(True)
        self.cancel_button.clicked.connect(self.reject)
        self.save_button.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.save_button)
        layout.addLayout(buttons)
        keep_buttons_whole(self)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        fit_to_text(self, DIALOG_MIN_WIDTH + 80, exact=True)

    def values(self) -> SettingsValues:
        return replace(
            self.initial,
            module=self.module_combo.currentData(),
            port=self.port_spin.value(),
            language=str(self.language_combo.currentData()),
            start_at_login=self.start_at_login.isChecked(),
            listen_at_launch=self.listen_at_launch.isChecked(),
        )

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            t("settings_module_browse", self.language),
            "",
            t("settings_module_filter", self.language),
        )
        if path:
            self.choose_module(path)

    def choose_module(self, path: str) -> None:
        index = self.module_combo.findData(path)
        if index < 0:
            self.module_combo.addItem(path, path)
            index = self.module_combo.count() - 1
        self.module_combo.setCurrentIndex(index)

    def _selection_changed(self, item: QListWidgetItem | None) -> None:
        row = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        removable = (
            isinstance(row, OriginRow) and not row.machine and self._remove_origin is not None
        )
        self.remove_button.setEnabled(removable)
        if isinstance(row, OriginRow) and row.machine:
            self.origin_note.setText(t("settings_origin_machine_note", self.language))
            self.origin_note.setVisible(True)
        else:
            self.origin_note.setVisible(False)

    def _remove(self) -> None:
        item = self.origin_list.currentItem()
        row = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if not isinstance(row, OriginRow) or row.machine or self._remove_origin is None:
            return
        self.remove_button.setEnabled(False)  # one removal at a time
        self.origin_list.setEnabled(False)

        def done(error: str | None) -> None:
            self.origin_list.setEnabled(True)
            if error is not None:
                self._selection_changed(self.origin_list.currentItem())
                self.origin_note.setText(error)
                self.origin_note.setVisible(True)
                return
            self.origin_list.takeItem(self.origin_list.row(item))
            self._selection_changed(self.origin_list.currentItem())

        self._remove_origin(row.origin, done)
