"""The import template: the header row, a CSV, an .xlsx with typed cells and a help sheet."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable

import openpyxl
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.i18n import translate
from kyso.platform.models import (
    VaccineProduct,
)
from kyso.platform.records import rules
from kyso.platform.records.importer.columns import COLUMNS


def template_headers(language: str = "vi") -> list[str]:
    """The template's header row: Vietnamese, or English (both are accepted on import)."""
    return [column.headers[1 if language == "en" else 0] for column in COLUMNS]


def template_csv(language: str = "vi") -> bytes:
    """A header-only CSV in UTF-8 with a byte-order mark, which Excel opens with diacritics."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(template_headers(language))
    return codecs.BOM_UTF8 + buffer.getvalue().encode("utf-8")


_TEXT_COLUMNS = {rules.IDENTITY_NUMBER, rules.PHONE, rules.AREA, rules.LOT, rules.FACILITY}


_DATE_COLUMNS = {rules.BIRTH_DATE, rules.VACCINATED_ON}


def template_xlsx(language: str = "vi", products: Iterable[tuple[str, str]] = ()) -> bytes:
    """The import template: an empty data sheet whose cells are typed so that Excel keeps
    leading zeros and dates, and a help sheet with the rules, an example and the products.

    ``products`` are (code, name) pairs to list; the shipped reference products by default.
    """
    from kyso.platform.records.reference_data import products as reference_products

    listed = list(products) or [(p.code, p.name) for p in reference_products()]
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = translate("records.template_sheet_data", language)
    sheet.append(template_headers(language))
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDE7F3")
    for index, column in enumerate(COLUMNS, 1):
        cell = sheet.cell(row=1, column=index)
        cell.font = bold
        cell.fill = fill
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = 16 if column.field != rules.FULL_NAME else 28
        # Typed columns: Excel keeps the leading zeros and the dates typed into them.
        if column.field in _TEXT_COLUMNS:
            sheet.column_dimensions[letter].number_format = "@"
        elif column.field in _DATE_COLUMNS:
            sheet.column_dimensions[letter].number_format = "DD/MM/YYYY"
    sheet.freeze_panes = "A2"
    letters = {c.field: get_column_letter(i) for i, c in enumerate(COLUMNS, 1)}
    genders = DataValidation(type="list", formula1='"Nam,Nữ"', allow_blank=True)
    genders.add(f"{letters[rules.GENDER]}2:{letters[rules.GENDER]}100000")
    doses = DataValidation(
        type="whole", operator="between", formula1="1", formula2=str(rules.MAX_DOSES)
    )
    doses.add(f"{letters[rules.DOSE_NUMBER]}2:{letters[rules.DOSE_NUMBER]}100000")
    sheet.add_data_validation(genders)
    sheet.add_data_validation(doses)

    help_sheet = workbook.create_sheet(translate("records.template_sheet_help", language))
    help_sheet.column_dimensions["A"].width = 34
    help_sheet.column_dimensions["B"].width = 90
    help_sheet.append([translate("records.template_help_title", language)])
    help_sheet["A1"].font = Font(bold=True, size=13)
    help_sheet.append([])
    for column in COLUMNS:
        required = translate(
            "records.template_required" if column.required else "records.template_optional",
            language,
        )
        help_sheet.append(
            [
                f"{column.headers[1 if language == 'en' else 0]} ({required})",
                translate(f"records.template_help_{column.field}", language),
            ]
        )
    help_sheet.append([])
    help_sheet.append([translate("records.template_example", language)])
    help_sheet.append(template_headers(language))
    help_sheet.append(
        [
            "Nguyễn Thị Lan",
            "17/05/1990",
            "Nữ",
            "079190123456",
            "0912345678",
            "12 Lê Lợi",
            "26740",
            2,
            "15/09/2021",
            "Pfizer",
            "FK5618",
            "",
        ]
    )
    help_sheet.append([])
    help_sheet.append([translate("records.template_products", language)])
    for code, name in listed:
        help_sheet.append([code, name])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def template_for(session: Session, language: str = "vi") -> bytes:
    """The .xlsx template listing the vaccine products this platform knows."""
    listed = session.execute(
        select(VaccineProduct.code, VaccineProduct.name).order_by(VaccineProduct.id)
    ).all()
    return template_xlsx(language, [(code, name) for code, name in listed])
