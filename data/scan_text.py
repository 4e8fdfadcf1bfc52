"""Carrier, location and description texts of generated scans.

Plausible, not real: Correios' Portuguese event texts for the Brazilian leg (from
``shared/reference/tracking_events.md``), AfterShip / Cainiao-like English messages elsewhere.
The generator picks one of each slot's variants at random; nothing here affects transit.
"""

from __future__ import annotations

__all__ = [
    "BR_STATE_CITIES",
    "DEFAULT_CITY",
    "DESCRIPTIONS_BR",
    "DESCRIPTIONS_EN",
    "DESTINATION_CARRIERS",
    "DESTINATION_CITIES",
    "EXPRESS_CARRIERS",
    "ORIGIN_CARRIERS",
    "ORIGIN_CITIES",
]

ORIGIN_CITIES: tuple[str, ...] = (
    "Shenzhen, CN",
    "Guangzhou, CN",
    "Yiwu, CN",
    "Hangzhou, CN",
    "Shanghai, CN",
    "Dongguan, CN",
)

ORIGIN_CARRIERS: dict[str, str] = {
    "aliexpress_premium": "Cainiao",
    "aliexpress_standard": "Cainiao",
    "cainiao_super_economy": "Cainiao",
    "epacket": "China Post",
}
EXPRESS_CARRIERS: tuple[str, ...] = ("DHL Express", "FedEx", "UPS")
"""Express parcels travel with one integrator end to end."""

DESTINATION_CARRIERS: dict[str, str] = {
    "US": "USPS",
    "BR": "Correios",
    "FR": "La Poste",
    "ES": "Correos",
    "GB": "Royal Mail",
    "DE": "Deutsche Post",
    "PL": "Poczta Polska",
    "IL": "Israel Post",
    "KR": "Korea Post",
    "NL": "PostNL",
    "CA": "Canada Post",
    "AU": "Australia Post",
    "CL": "Correos de Chile",
    "MX": "Correos de Mexico",
    "IT": "Poste Italiane",
    "BE": "bpost",
    "PT": "CTT",
    "CZ": "Ceska posta",
    "SE": "PostNord",
    "JP": "Japan Post",
    "SA": "SPL",
    "CO": "4-72",
    "NZ": "NZ Post",
    "LU": "POST Luxembourg",
    "IS": "Iceland Post",
    "MT": "MaltaPost",
    "CY": "Cyprus Post",
    "UY": "Correo Uruguayo",
}
DEFAULT_CARRIER = "Local postal operator"

# (entry hub, delivery city) per destination.
DESTINATION_CITIES: dict[str, tuple[str, str]] = {
    "US": ("New York, NY, US", "Chicago, IL, US"),
    "BR": ("Curitiba, PR, BR", "Sao Paulo, SP, BR"),
    "FR": ("Roissy-CDG, FR", "Lyon, FR"),
    "ES": ("Madrid, ES", "Barcelona, ES"),
    "GB": ("Heathrow, GB", "Manchester, GB"),
    "DE": ("Frankfurt, DE", "Berlin, DE"),
    "PL": ("Warsaw, PL", "Krakow, PL"),
    "IL": ("Tel Aviv, IL", "Haifa, IL"),
    "KR": ("Incheon, KR", "Seoul, KR"),
    "NL": ("Amsterdam, NL", "Utrecht, NL"),
    "CA": ("Mississauga, ON, CA", "Vancouver, BC, CA"),
    "AU": ("Sydney, NSW, AU", "Melbourne, VIC, AU"),
    "CL": ("Santiago, CL", "Valparaiso, CL"),
    "MX": ("Mexico City, MX", "Guadalajara, MX"),
    "IT": ("Milan, IT", "Rome, IT"),
    "BE": ("Brussels, BE", "Antwerp, BE"),
    "PT": ("Lisbon, PT", "Porto, PT"),
    "CZ": ("Prague, CZ", "Brno, CZ"),
    "SE": ("Stockholm, SE", "Gothenburg, SE"),
    "JP": ("Tokyo, JP", "Osaka, JP"),
    "SA": ("Riyadh, SA", "Jeddah, SA"),
    "CO": ("Bogota, CO", "Medellin, CO"),
    "NZ": ("Auckland, NZ", "Wellington, NZ"),
    "LU": ("Luxembourg, LU", "Esch-sur-Alzette, LU"),
    "IS": ("Reykjavik, IS", "Akureyri, IS"),
    "MT": ("Valletta, MT", "Birkirkara, MT"),
    "CY": ("Nicosia, CY", "Limassol, CY"),
    "UY": ("Montevideo, UY", "Salto, UY"),
}
DEFAULT_CITY = ("International mail centre", "Destination city")

BR_STATE_CITIES: dict[str, str] = {
    "SP": "Sao Paulo, SP, BR",
    "RJ": "Rio de Janeiro, RJ, BR",
    "MG": "Belo Horizonte, MG, BR",
    "ES": "Vitoria, ES, BR",
    "PR": "Curitiba, PR, BR",
    "SC": "Florianopolis, SC, BR",
    "RS": "Porto Alegre, RS, BR",
    "DF": "Brasilia, DF, BR",
    "GO": "Goiania, GO, BR",
    "MT": "Cuiaba, MT, BR",
    "MS": "Campo Grande, MS, BR",
    "BA": "Salvador, BA, BR",
    "PE": "Recife, PE, BR",
    "CE": "Fortaleza, CE, BR",
    "MA": "Sao Luis, MA, BR",
    "PB": "Joao Pessoa, PB, BR",
    "RN": "Natal, RN, BR",
    "AL": "Maceio, AL, BR",
    "PI": "Teresina, PI, BR",
    "SE": "Aracaju, SE, BR",
    "PA": "Belem, PA, BR",
    "AM": "Manaus, AM, BR",
    "RO": "Porto Velho, RO, BR",
    "TO": "Palmas, TO, BR",
    "AC": "Rio Branco, AC, BR",
    "AP": "Macapa, AP, BR",
    "RR": "Boa Vista, RR, BR",
}

# Milestone (or "lost" / "exception") -> message variants.
DESCRIPTIONS_EN: dict[str, tuple[str, ...]] = {
    "info_received": ("Shipment information received", "Electronic information submitted"),
    "picked_up": ("Accepted by carrier", "Received by logistics company"),
    "departed_origin": (
        "Departed from departure country/region",
        "Export customs clearance complete, departed from origin",
    ),
    "arrived_destination": (
        "Arrived at destination country/region",
        "Arrival at destination sorting centre",
    ),
    "customs_hold": ("Held by customs", "Import customs clearance started"),
    "customs_cleared": ("Import customs clearance complete", "Released from customs"),
    "out_for_delivery": ("Out for delivery", "With delivery courier"),
    "delivery_failed": ("Delivery attempted - recipient not available",),
    "available_for_pickup": ("Available for pickup at the post office",),
    "delivered": ("Delivered", "Delivered to recipient"),
    "returning": ("Returning to sender",),
    "returned": ("Returned to sender",),
    "lost": ("Shipment lost",),
    "exception": ("Exception: shipment cannot be located",),
}
# Correios texts for the Brazilian leg (origin scans stay in English).
DESCRIPTIONS_BR: dict[str, tuple[str, ...]] = {
    "arrived_destination": ("Objeto recebido pelos Correios do Brasil",),
    "customs_hold": ("Encaminhado para fiscalização aduaneira", "Aguardando pagamento"),
    "customs_cleared": (
        "Fiscalização aduaneira finalizada",
        "Pagamento confirmado",
        "Liberado sem tributação",
    ),
    "out_for_delivery": ("Objeto saiu para entrega ao destinatário",),
    "delivery_failed": ("Objeto não entregue - carteiro não atendido",),
    "available_for_pickup": ("Objeto aguardando retirada no endereço indicado",),
    "delivered": ("Objeto entregue ao destinatário",),
    "returning": ("Prazo de pagamento encerrado",),
    "returned": ("Objeto devolvido ao país de origem",),
    "lost": ("Objeto extraviado",),
    "exception": ("Objeto não localizado no fluxo postal",),
}
