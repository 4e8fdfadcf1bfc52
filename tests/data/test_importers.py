"""Importing history: the Olist layout and two made-up seller layouts (quoting, BOM, dates)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from data.importers import (
    ColumnMapError,
    import_olist,
    import_seller_export,
    parse_column_map,
    read_csv_text,
)
from model.errors import SchemaError
from model.schema import HISTORY_COLUMNS, validate_history
from service.cli import app

runner = CliRunner()

OLIST_HEADER = (
    "order_id,customer_id,order_status,order_purchase_timestamp,order_approved_at,"
    "order_delivered_carrier_date,order_delivered_customer_date,order_estimated_delivery_date"
)
# Line numbers in comments: line 1 is the header.
OLIST_ROWS = [
    # 2: delivered, on time
    "o1,c1,delivered,2017-10-02 10:56:33,2017-10-02 11:07:15,2017-10-04 19:55:00,"
    "2017-10-10 21:25:13,2017-10-18 00:00:00",
    # 3: delivered late (after the estimated date)
    "o2,c2,delivered,2018-02-13 21:18:39,2018-02-13 22:20:29,2018-02-14 19:46:34,"
    "2018-03-09 22:09:13,2018-03-01 00:00:00",
    # 4: handed to the carrier, never delivered
    "o3,c3,shipped,2018-08-01 10:00:00,2018-08-01 11:00:00,2018-08-02 15:00:00,,"
    "2018-08-30 00:00:00",
    # 5, 6, 7: never handed to a carrier
    "o4,c4,canceled,2018-08-03 10:00:00,,,,2018-08-30 00:00:00",
    "o5,c5,unavailable,2018-08-03 10:00:00,2018-08-03 11:00:00,,,2018-08-30 00:00:00",
    "o6,c6,canceled,2018-08-04 10:00:00,,,,2018-08-31 00:00:00",
    # 8: handed to the carrier after the promised date: rejected by validation
    "o7,c7,delivered,2018-01-02 10:00:00,2018-01-02 11:00:00,2018-02-05 10:00:00,"
    "2018-02-09 10:00:00,2018-02-01 00:00:00",
    # 9: customer with no row in the customers table
    "o8,c404,delivered,2018-05-02 10:00:00,2018-05-02 11:00:00,2018-05-03 10:00:00,"
    "2018-05-10 10:00:00,2018-05-25 00:00:00",
]
CUSTOMERS = (
    "customer_id,customer_unique_id,customer_zip_code_prefix,customer_city,customer_state\n"
    "c1,u1,14409,franca,SP\nc2,u2,69005,manaus,AM\nc3,u3,01151,sao paulo,SP\n"
    "c7,u7,22000,rio de janeiro,RJ\n"
)


@pytest.fixture
def olist_files(tmp_path: Path) -> tuple[Path, Path]:
    orders = tmp_path / "olist_orders_dataset.csv"
    orders.write_text(OLIST_HEADER + "\n" + "\n".join(OLIST_ROWS) + "\n", encoding="utf-8")
    customers = tmp_path / "olist_customers_dataset.csv"
    customers.write_text(CUSTOMERS, encoding="utf-8")
    return orders, customers


def test_olist_maps_columns_and_skips_orders_never_shipped(
    olist_files: tuple[Path, Path],
) -> None:
    orders, customers = olist_files
    result = import_olist(read_csv_text(orders), read_csv_text(customers))
    history = result.history.set_index("order_id")
    assert list(history.index) == ["o1", "o2", "o3", "o8"]
    assert result.skipped == {
        "never handed to a carrier (status canceled)": 2,
        "never handed to a carrier (status unavailable)": 1,
    }
    assert result.rejects.to_dict(orient="records") == [
        {"line": 8, "order_id": "o7", "column": "deadline", "reason": "deadline before shipped_at"}
    ]
    o2 = history.loc["o2"]
    assert o2["destination_country"] == "BR"
    assert o2["shipping_method"] == "unknown"
    assert o2["destination_region"] == "AM"
    assert o2["shipped_at"] == pd.Timestamp("2018-02-14")
    assert o2["deadline"] == pd.Timestamp("2018-03-01")
    assert o2["delivered_at"] == pd.Timestamp("2018-03-09")
    assert o2["ordered_at"] == pd.Timestamp("2018-02-13")
    assert history.loc["o2", "line"] == 3
    assert pd.isna(history.loc["o3", "delivered_at"])  # censored, not dropped
    assert pd.isna(history.loc["o8", "destination_region"])
    assert "1 orders have no customer row: region left empty" in result.notes


def test_olist_without_customers_has_no_region(olist_files: tuple[Path, Path]) -> None:
    orders, _ = olist_files
    result = import_olist(read_csv_text(orders))
    assert result.history["destination_region"].isna().all()
    assert result.notes == ["no customers table: destination_region left empty"]


def test_olist_cli_writes_history_and_prints_counts(
    olist_files: tuple[Path, Path], tmp_path: Path
) -> None:
    orders, customers = olist_files
    out = tmp_path / "history.csv"
    args = ["import", "olist", "--orders", str(orders), "--customers", str(customers)]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"wrote 4 shipments to {out}; skipped 3; rejected 1" in text
    assert "skipped: never handed to a carrier (status canceled)" in text
    assert "rejected: deadline: deadline before shipped_at" in text
    written = pd.read_csv(out, dtype=str, keep_default_na=False, na_values=[""])
    assert list(written.columns) == list(HISTORY_COLUMNS)
    assert written.loc[written["order_id"] == "o1", "shipped_at"].item() == "2017-10-04"
    again = validate_history(written)
    assert again.rejects.empty and len(again.valid) == 4
    rejects = pd.read_csv(tmp_path / "history.rejects.csv")
    assert rejects[["line", "order_id", "column"]].values.tolist() == [[8, "o7", "deadline"]]


def test_olist_wrong_table_is_a_one_line_error(tmp_path: Path) -> None:
    wrong = tmp_path / "orders.csv"
    wrong.write_text("order_id,order_status\nx,delivered\n", encoding="utf-8")
    with pytest.raises(SchemaError) as caught:
        import_olist(read_csv_text(wrong))
    assert str(caught.value) == (
        f"{wrong} is not an Olist orders table: missing column(s) order_purchase_timestamp,"
        " order_delivered_carrier_date, order_delivered_customer_date,"
        " order_estimated_delivery_date"
    )
    result = runner.invoke(
        app, ["import", "olist", "--orders", str(wrong), "--out", str(tmp_path / "h.csv")]
    )
    assert result.exit_code == 1
    assert "is not an Olist orders table" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "h.csv").exists()


# -- seller layout 1: a web-shop export, UTF-8 with BOM, quoted fields, ISO dates ----------------
SHOP_EXPORT = (
    "\ufeffOrder Name,Ship To Country,Carrier,Fulfilled At,Promised By,Delivered,Province,Note\n"
    '#1001,US,"USPS, First Class",2025-03-01T10:00:00-05:00,2025-03-25,2025-03-09,NY,plain\n'
    '#1002,de,DHL,2025-03-02,2025-03-30,,BY,"said ""leave at door"", then\n'
    'moved house"\n'
    "#1003,XX,DHL,2025-03-03,2025-03-30,2025-03-10,,\n"
    "#1004,FR,Colissimo,2025-03-04,2025-03-01,,,\n"
    "#1001,US,USPS,2025-03-05,2025-03-30,,,duplicate id\n"
)
SHOP_MAP = [
    "order_id=Order Name",
    "destination_country=ship to country",  # matched case-insensitively
    "shipping_method=Carrier",
    "shipped_at=Fulfilled At",
    "deadline=Promised By",
    "delivered_at=Delivered",
    "destination_region=Province",
]


def test_shop_export_with_bom_quotes_and_multiline_field(tmp_path: Path) -> None:
    path = tmp_path / "shop.csv"
    path.write_bytes(SHOP_EXPORT.encode("utf-8"))
    text = read_csv_text(path)
    assert text.frame.columns[0] == "Order Name"  # the BOM is not part of the name
    assert text.frame.loc[1, "Note"] == 'said "leave at door", then\nmoved house'
    assert text.lines.tolist() == [2, 3, 5, 6, 7]  # order #1002 spans lines 3-4
    result = import_seller_export(text, parse_column_map(SHOP_MAP))
    history = result.history.set_index("order_id")
    assert list(history.index) == ["#1001", "#1002"]
    assert history.loc["#1001", "shipping_method"] == "usps, first class"
    assert history.loc["#1002", "destination_country"] == "DE"
    assert history.loc["#1002", "destination_region"] == "BY"
    assert history.loc["#1001", "shipped_at"] == pd.Timestamp("2025-03-01")
    assert result.rejects.to_dict(orient="records") == [
        {
            "line": 5,
            "order_id": "#1003",
            "column": "destination_country",
            "reason": "'XX' is not an ISO 3166-1 alpha-2 country code",
        },
        {
            "line": 6,
            "order_id": "#1004",
            "column": "deadline",
            "reason": "deadline before shipped_at",
        },
        {
            "line": 7,
            "order_id": "#1001",
            "column": "order_id",
            "reason": "duplicate order_id (first seen on line 2)",
        },
    ]


def test_shop_export_cli_writes_rejects_beside_the_output(tmp_path: Path) -> None:
    path = tmp_path / "shop.csv"
    path.write_bytes(SHOP_EXPORT.encode("utf-8"))
    out = tmp_path / "out" / "history.parquet"
    args = ["import", "csv", str(path), "--out", str(out)]
    for spec in SHOP_MAP:
        args += ["--map", spec]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 2 shipments" in " ".join(result.output.split())
    written = pd.read_parquet(out)
    assert list(written.columns) == list(HISTORY_COLUMNS)
    assert written["order_id"].tolist() == ["#1001", "#1002"]
    rejects = pd.read_csv(tmp_path / "out" / "history.rejects.csv")
    assert rejects["line"].tolist() == [5, 6, 7]


# -- seller layout 2: a European ERP, semicolons, day-first dates, no country column -------------
ERP_EXPORT = (
    "Auftragsnr;Versanddatum;Liefertermin;Zugestellt am;Gewicht (g);Bundesland\n"
    "A-1;01.02.2025;28.02.2025;07.02.2025;1200;Bayern\n"
    "A-2;03.02.2025;03.03.2025;;850;\n"
    "A-3;31.02.2025;15.03.2025;;400;Berlin\n"
    'A-4;"05.02.2025";10.03.2025;2025-02-12;;Hessen\n'
    "A-5;06.02.2025;12.03.2025;;schwer;\n"
)
ERP_MAP = [
    "order_id=Auftragsnr",
    "shipped_at=Versanddatum",
    "deadline=Liefertermin",
    "delivered_at=Zugestellt am",
    "weight_g=Gewicht (g)",
    "destination_region=Bundesland",
]


def test_erp_export_day_first_dates_and_fixed_country(tmp_path: Path) -> None:
    path = tmp_path / "erp.csv"
    path.write_text(ERP_EXPORT, encoding="utf-8")
    text = read_csv_text(path)
    assert text.delimiter == ";"
    result = import_seller_export(
        text, parse_column_map(ERP_MAP), date_format="%d.%m.%Y", country="de"
    )
    history = result.history.set_index("order_id")
    assert list(history.index) == ["A-1", "A-2"]
    assert (history["destination_country"] == "DE").all()
    # 01.02.2025 is the first of February, not the second of January.
    assert history.loc["A-1", "shipped_at"] == pd.Timestamp("2025-02-01")
    assert history.loc["A-1", "deadline"] == pd.Timestamp("2025-02-28")
    assert history.loc["A-1", "weight_g"] == 1200.0
    assert history.loc["A-1", "destination_region"] == "BAYERN"
    assert result.rejects.to_dict(orient="records") == [
        {
            "line": 4,
            "order_id": "A-3",
            "column": "shipped_at",
            "reason": "'31.02.2025' does not match --date-format %d.%m.%Y",
        },
        {
            "line": 5,
            "order_id": "A-4",
            "column": "delivered_at",
            "reason": "'2025-02-12' does not match --date-format %d.%m.%Y",
        },
        {"line": 6, "order_id": "A-5", "column": "weight_g", "reason": "'schwer' is not a number"},
    ]


def test_erp_export_cli(tmp_path: Path) -> None:
    path = tmp_path / "erp.csv"
    path.write_text(ERP_EXPORT, encoding="utf-8")
    out = tmp_path / "history.csv"
    args = ["import", "csv", str(path), "--out", str(out), "--date-format", "%d.%m.%Y"]
    args += ["--country", "DE"]
    for spec in ERP_MAP:
        args += ["--map", spec]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 2 shipments" in " ".join(result.output.split())
    written = pd.read_csv(out, dtype=str)
    assert written["shipped_at"].tolist() == ["2025-02-01", "2025-02-03"]


def test_same_named_columns_map_themselves_and_windows_1252_is_read(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_bytes(
        "order_id,destination_country,shipped_at,deadline,destination_region\n"
        "1,BR,2025-01-02,2025-02-01,São Paulo\n".encode("cp1252")
    )
    text = read_csv_text(path)
    assert text.encoding == "cp1252"
    result = import_seller_export(text, {})
    assert result.history["destination_region"].tolist() == ["SÃO PAULO"]


def test_record_with_too_many_fields_is_rejected_not_shifted(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(
        "order_id,destination_country,shipped_at,deadline\n"
        "1,BR,2025-01-02,2025-02-01\n"
        "2,BR,2025-01-02,2025-02-01,extra\n"
        "\n"
        "3,BR,2025-01-03\n",
        encoding="utf-8",
    )
    result = import_seller_export(read_csv_text(path), {})
    assert result.history["order_id"].tolist() == ["1"]
    assert result.rejects.to_dict(orient="records") == [
        {
            "line": 3,
            "order_id": None,
            "column": "(record)",
            "reason": "record has 5 fields but the header has 4 (unquoted delimiter in a value?)",
        },
        {"line": 5, "order_id": "3", "column": "deadline", "reason": "missing required value"},
    ]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["shipped_at"], "--map 'shipped_at': expected COLUMN=SOURCE, e.g. shipped_at=Ship Date"),
        (
            ["ship_date=Versand"],
            "--map 'ship_date=Versand': 'ship_date' is not a history column (one of: "
            + ", ".join(HISTORY_COLUMNS)
            + ")",
        ),
        (
            ["deadline=A", "deadline=B"],
            "--map 'deadline=B': deadline is already mapped to 'A'",
        ),
    ],
)
def test_malformed_map_options(specs: list[str], message: str) -> None:
    with pytest.raises(ColumnMapError) as caught:
        parse_column_map(specs)
    assert str(caught.value) == message


def test_map_to_a_missing_column_and_unmapped_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "erp.csv"
    path.write_text(ERP_EXPORT, encoding="utf-8")
    text = read_csv_text(path)
    with pytest.raises(ColumnMapError) as caught:
        import_seller_export(text, {"order_id": "Order"})
    assert str(caught.value) == (
        f"--map order_id=Order: {path} has no column 'Order' (its columns: Auftragsnr,"
        " Versanddatum, Liefertermin, Zugestellt am, Gewicht (g), Bundesland)"
    )
    with pytest.raises(ColumnMapError) as caught:
        import_seller_export(text, {"order_id": "Auftragsnr"})
    assert str(caught.value).startswith(
        f"{path}: no column for destination_country, shipped_at, deadline:"
        " add --map COLUMN=SOURCE or --country CC"
    )
    with pytest.raises(ColumnMapError) as caught:
        import_seller_export(text, parse_column_map(ERP_MAP), country="Germany")
    assert str(caught.value) == "--country 'GERMANY' is not an ISO 3166-1 alpha-2 code"


def test_cli_map_error_and_all_rows_rejected_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "erp.csv"
    path.write_text(ERP_EXPORT, encoding="utf-8")
    out = tmp_path / "history.csv"
    result = runner.invoke(app, ["import", "csv", str(path), "--out", str(out), "--map", "x=y"])
    assert result.exit_code == 1
    assert "error: --map 'x=y': 'x' is not a history column" in result.output
    args = ["import", "csv", str(path), "--out", str(out), "--country", "DE"]
    for spec in ERP_MAP:
        args += ["--map", spec]
    result = runner.invoke(app, args)  # ISO dates expected: every row fails
    assert result.exit_code == 1
    assert "no valid shipment rows among 5 read" in " ".join(result.output.split())
    assert not out.exists()
    assert len(pd.read_csv(tmp_path / "history.rejects.csv")) == 5
